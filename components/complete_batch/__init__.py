"""complete_batch: see README.md."""

from oblivio_pipeline.components.complete_batch.component import complete_batch

__all__ = ["complete_batch"]
