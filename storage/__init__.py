"""Files the pipeline keeps beside its database, as plain classes: the content-addressed image store, the inbox
with its batch manifests, and the version manifests. The Dagster resources in `resources/` are configuration over
these; scripts and the use cases can build them directly."""
