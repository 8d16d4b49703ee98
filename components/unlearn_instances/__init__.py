"""unlearn_instances: see README.md."""

from oblivio_pipeline.components.unlearn_instances.component import unlearn_instances

__all__ = ["unlearn_instances"]
