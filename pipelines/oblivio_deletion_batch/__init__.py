"""The deletion-batch pipeline, the one a recurring run schedules; compiled to pipeline.yaml."""

from oblivio_pipeline.pipelines.oblivio_deletion_batch.pipeline import (
    deletion_batch_pipeline,
    make_deletion_batch_pipeline,
)

__all__ = ["deletion_batch_pipeline", "make_deletion_batch_pipeline"]
