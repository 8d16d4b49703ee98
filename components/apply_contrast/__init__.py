"""apply_contrast: see README.md."""

from oblivio_pipeline.components.apply_contrast.component import apply_contrast

__all__ = ["apply_contrast"]
