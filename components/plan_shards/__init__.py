"""plan_shards: see README.md."""

from oblivio_pipeline.components.plan_shards.component import plan_shards

__all__ = ["plan_shards"]
