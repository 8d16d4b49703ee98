"""A model directory's ``config.json``, read without torch: the steps that only look at a model
(which classes it forgot, what it was trained on) run where torch is not installed or not worth
its two seconds of import (the control plane's steps, the validation step)."""

from __future__ import annotations

import json
import os
from typing import Any

from oblivio.data import storage
from oblivio.errors import OblivioError

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "oblivio-model/1"
_REQUIRED = ("arch", "num_classes", "in_chans", "img_size", "normalization", "class_names",
             "weights_sha256")


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated ``config.json`` of a model directory."""
    raw = storage.read_bytes(storage.join(os.fspath(path), CONFIG_FILE))
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise OblivioError(f"model {os.fspath(path)}: {CONFIG_FILE} is not valid JSON") from exc
    missing = [k for k in _REQUIRED if not isinstance(config, dict) or k not in config]
    if missing:
        raise OblivioError(f"model {os.fspath(path)}: {CONFIG_FILE} lacks {', '.join(missing)}")
    return config
