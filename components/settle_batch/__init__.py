"""settle_batch: see README.md."""

from oblivio_pipeline.components.settle_batch.component import settle_batch

__all__ = ["settle_batch"]
