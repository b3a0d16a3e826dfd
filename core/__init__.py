"""Pure domain logic, no Dagster and no database: settings, task config, routing, geometry, the annotation
vocabulary, review rules, label formats, manifests, image checks, plots."""
