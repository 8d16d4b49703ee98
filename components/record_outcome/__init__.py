"""record_outcome: see README.md."""

from oblivio_pipeline.components.record_outcome.component import record_outcome

__all__ = ["record_outcome"]
