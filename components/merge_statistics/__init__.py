"""merge_statistics: see README.md."""

from oblivio_pipeline.components.merge_statistics.component import merge_statistics

__all__ = ["merge_statistics"]
