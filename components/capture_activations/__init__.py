"""capture_activations: see README.md."""

from oblivio_pipeline.components.capture_activations.component import capture_activations

__all__ = ["capture_activations"]
