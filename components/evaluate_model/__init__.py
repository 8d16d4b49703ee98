"""evaluate_model: see README.md."""

from oblivio_pipeline.components.evaluate_model.component import evaluate_model

__all__ = ["evaluate_model"]
