"""Classifiers: timm architectures for small images, and the model directory contract."""

from oblivio.models.build import ImageClassifier, build
from oblivio.models.checkpoint import load_model, read_config, save_model

__all__ = ["ImageClassifier", "build", "load_model", "read_config", "save_model"]
