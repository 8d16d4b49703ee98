"""sample_data: see README.md."""

from oblivio_pipeline.components.sample_data.component import sample_data

__all__ = ["sample_data"]
