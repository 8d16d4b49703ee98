"""resolve_model: see README.md."""

from oblivio_pipeline.components.resolve_model.component import resolve_model

__all__ = ["resolve_model"]
