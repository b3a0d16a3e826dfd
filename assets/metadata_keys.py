"""The materialization metadata that code reads back (the runner's summary, the catch-up schedule, scoring with the
classifier a batch learned): written and read under these names only."""

BANDS = "bands_per_task_and_concept"  # annotations, concept_annotations: task -> concept -> band counts
ROUTING_RULES = "routing_rules"  # annotations: task -> the rules hash it was routed under
INFERENCE = "models"  # predictions: per model, images, runtime and speed
MODEL_IDS = "model_ids"  # predictions: the models whose predictions the batch holds
CLASSIFIERS = "classifiers"  # concept_classifier: per task, the classifier learned, or why none
VERSIONS = "versions"  # dataset_versions: per version key, its manifest and counts
TRAINING = "tasks"  # detector_models: per task, what training, evaluation and promotion did
