"""oblivio: make image classifiers forget deleted data without retraining from scratch.

torch and timm load on first use, not on ``import oblivio``: the CLI and the pipeline steps
import this package, and those that touch no model (``--help``, ``requests list``, the batch
steps) would otherwise wait about 4.6 s for them."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from oblivio.errors import OblivioError

if TYPE_CHECKING:
    import torch

    from oblivio.models.networks import ImageClassifier

__all__ = ["OblivioError", "load_model", "save_model"]


def load_model(path_or_uri: str | os.PathLike[str], device: str | torch.device = "cpu"
               ) -> ImageClassifier:
    """An eval-mode model from a model directory, an ``s3://`` URI, or a registered version
    (``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``). Never unpickles."""
    from oblivio.models.checkpoint import load_model as load_dir

    if str(path_or_uri).startswith("models:/"):
        from oblivio.tracking.registry import downloaded

        with downloaded(str(path_or_uri)) as model_dir:  # removed once the weights are loaded
            return load_dir(model_dir, device)
    return load_dir(path_or_uri, device)


def __getattr__(name: str) -> Any:
    """``oblivio.save_model`` is ``oblivio.models.save_model``, imported when first asked for."""
    if name == "save_model":
        from oblivio.models.checkpoint import save_model

        return save_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
