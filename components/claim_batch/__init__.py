"""claim_batch: see README.md."""

from oblivio_pipeline.components.claim_batch.component import claim_batch

__all__ = ["claim_batch"]
