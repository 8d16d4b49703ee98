"""MLflow: where runs and the model registry live, lineage tags, gates and promotion."""
