"""Safetensors files tagged with a format name, on a path or URI: how the pipeline's
intermediate artifacts (statistics, subspaces) travel between steps without pickle."""

from __future__ import annotations

import json
import os

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from oblivio.data import storage
from oblivio.errors import OblivioError


def write_tensors(uri: str | os.PathLike[str], tensors: dict[str, torch.Tensor], fmt: str,
                  meta: dict[str, str]) -> None:
    """Write ``tensors`` (moved to the CPU) with ``meta`` and the format tag."""
    blob = save_safetensors({k: v.contiguous().cpu() for k, v in tensors.items()},
                            metadata={"format": fmt, **meta})
    storage.write_bytes(uri, blob)


def read_tensors(uri: str | os.PathLike[str], fmt: str
                 ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a file written by :func:`write_tensors` with the same tag."""
    blob = storage.read_bytes(uri)
    try:
        tensors = load_safetensors(blob)
        header_len = int.from_bytes(blob[:8], "little")  # safetensors: u64 length + JSON header
        meta = json.loads(blob[8:8 + header_len]).get("__metadata__") or {}
    except (ValueError, RuntimeError, OSError, SafetensorError) as exc:
        raise OblivioError(f"{os.fspath(uri)} is not a {fmt} file") from exc
    if meta.get("format") != fmt:
        raise OblivioError(f"{os.fspath(uri)} is not a {fmt} file")
    return tensors, meta
