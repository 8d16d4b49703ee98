"""validate_request: see README.md."""

from oblivio_pipeline.components.validate_request.component import validate_request

__all__ = ["validate_request"]
