"""oblivio: make image classifiers forget deleted data without retraining from scratch."""

from __future__ import annotations

import os

import torch

from oblivio.errors import OblivioError
from oblivio.models import save_model
from oblivio.models.build import ImageClassifier
from oblivio.models.checkpoint import load_model as _load_dir

__all__ = ["OblivioError", "load_model", "save_model"]


def load_model(path_or_uri: str | os.PathLike[str], device: str | torch.device = "cpu"
               ) -> ImageClassifier:
    """An eval-mode model from a model directory, an ``s3://`` URI, or a registered version
    (``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``). Never unpickles."""
    if str(path_or_uri).startswith("models:/"):
        from oblivio.tracking.registry import download_model_dir

        path_or_uri = download_model_dir(str(path_or_uri))
    return _load_dir(path_or_uri, device)
