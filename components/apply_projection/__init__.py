"""apply_projection: see README.md."""

from oblivio_pipeline.components.apply_projection.component import apply_projection

__all__ = ["apply_projection"]
