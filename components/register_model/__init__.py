"""register_model: see README.md."""

from oblivio_pipeline.components.register_model.component import register_model

__all__ = ["register_model"]
