"""compute_subspaces: see README.md."""

from oblivio_pipeline.components.compute_subspaces.component import compute_subspaces

__all__ = ["compute_subspaces"]
