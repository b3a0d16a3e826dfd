"""Use cases: one function per thing a user does (import labels, route a task's predictions, score concepts, build
and export a version, train a task's detector), called alike by the assets, the runner and the CLI.

Above the store, the label formats and the model engines; below the Dagster resources, which they never import:
what they are handed (a store, an image store, ...) is named by a protocol in `services.ports` that the resources
satisfy."""
