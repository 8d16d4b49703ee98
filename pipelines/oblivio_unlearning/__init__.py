"""The unlearning pipeline: classes and deletion requests alike; compiled to pipeline.yaml."""

from oblivio_pipeline.pipelines.oblivio_unlearning.pipeline import (
    make_unlearning_pipeline,
    unlearning_pipeline,
)

__all__ = ["make_unlearning_pipeline", "unlearning_pipeline"]
