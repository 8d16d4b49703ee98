"""Classifiers: timm architectures for small images, and the model directory contract.

The names below are loaded on first use, so that ``oblivio.models.config`` and
``oblivio.models.forgotten`` (what a step reads of a model without running it) import without
torch."""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"ImageClassifier": "networks", "build": "networks", "load_model": "checkpoint",
          "save_model": "checkpoint", "read_config": "config"}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
