"""Applications over the pipeline: the CLI, the review desk and page, the in-process runner, import and
export, dry runs, status and the demo data."""
