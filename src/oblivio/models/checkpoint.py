"""The model directory contract: ``model.safetensors`` + ``config.json``.

Weights are safetensors, so loading an untrusted model never executes code. The config carries
everything needed to rebuild the network and the SHA-256 of the weights file, which is both the
corruption check and the model's fingerprint in lineage.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from oblivio.data import storage
from oblivio.errors import OblivioError
from oblivio.models.config import CONFIG_FILE, FORMAT, WEIGHTS_FILE, read_config
from oblivio.models.networks import ImageClassifier, build


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def non_finite(state: dict[str, torch.Tensor]) -> tuple[int, str | None]:
    """How many floating-point values of ``state`` are NaN or infinite, and the first tensor
    holding one: a model with any of them predicts garbage, so none is written or loaded."""
    total, first = 0, None
    for key, tensor in state.items():
        if tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad and first is None:
                first = key
            total += bad
    return total, first


def save_model(model: ImageClassifier, path: str | os.PathLike[str], *, arch: str,
               class_names: list[str], img_size: int, parent_fingerprint: str | None = None,
               provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``model`` to a model directory (local or s3://) and return its config.

    The directory appears whole or not at all (``storage.staged_dir``: a killed writer leaves
    no directory, or the previous one intact); on S3 the weights are written first and the
    config last, so a directory with a config is whole.
    """
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    bad, first = non_finite(state)
    if bad:
        raise OblivioError(f"refusing to write {os.fspath(path)}: {bad} weights are NaN or "
                           f"infinite (the first in {first}): the method diverged; nothing "
                           "was written (a smaller learning rate or fewer steps may hold)")
    blob = save_safetensors(state)
    config = {
        "format": FORMAT,
        "arch": arch,
        "num_classes": len(class_names),
        "in_chans": int(model.mean.shape[1]),
        "img_size": int(img_size),
        "normalization": {"mean": model.mean.flatten().tolist(),
                          "std": model.std.flatten().tolist()},
        "class_names": list(class_names),
        "weights_sha256": sha256(blob),
        "parent_fingerprint": parent_fingerprint,
        "provenance": provenance or {},
    }
    with storage.staged_dir(path) as staged:
        storage.write_bytes(storage.join(staged, WEIGHTS_FILE), blob)
        storage.write_bytes(storage.join(staged, CONFIG_FILE),
                            json.dumps(config, indent=2, sort_keys=True).encode())
    return config


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu"
               ) -> ImageClassifier:
    """Load a model directory into an eval-mode module; the config travels as ``model.config``.

    Corrupt weights, a config that does not match them, or an unknown architecture each give
    one :class:`OblivioError`.
    """
    where = f"model {os.fspath(path)}"
    config = read_config(path)
    blob = storage.read_bytes(storage.join(os.fspath(path), WEIGHTS_FILE))
    if sha256(blob) != config["weights_sha256"]:
        raise OblivioError(f"{where}: {WEIGHTS_FILE} does not match the SHA-256 in {CONFIG_FILE}"
                           " (corrupt or replaced file)")
    try:
        state = load_safetensors(blob)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise OblivioError(f"{where}: {WEIGHTS_FILE} is not a valid safetensors file") from exc
    model = build(config["arch"], config["num_classes"], config["in_chans"], config["img_size"],
                  config["normalization"])
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    retyped = [k for k in expected if k in state and state[k].dtype != expected[k].dtype]
    if missing or unexpected or wrong:
        detail = (f"missing {missing[:2]}" if missing else
                  f"unexpected {unexpected[:2]}" if unexpected else
                  f"{wrong[0]} has shape {tuple(state[wrong[0]].shape)}, "
                  f"{config['arch']} expects {tuple(expected[wrong[0]].shape)}")
        raise OblivioError(f"{where}: weights do not fit {config['arch']} "
                           f"with {config['num_classes']} classes ({detail})")
    if retyped:  # load_state_dict would cast silently
        key = retyped[0]
        raise OblivioError(f"{where}: {key} is {str(state[key].dtype).removeprefix('torch.')}, "
                           f"{config['arch']} expects "
                           f"{str(expected[key].dtype).removeprefix('torch.')}")
    bad, first = non_finite(state)
    if bad:
        raise OblivioError(f"{where}: {bad} weights are NaN or infinite (the first in {first}): "
                           "not a usable model")
    model.load_state_dict(state)
    model.config = config
    return model.to(device).eval()


def check_fits(config: dict[str, Any], dataset: Any, where: str) -> None:
    """The model at ``where`` was built for this dataset: the same class names, in the same
    order (a count alone lets a model of digits "forget" a sneaker), and the same image shape.
    ``dataset`` is an ``oblivio.data.Dataset``."""
    names = list(config["class_names"])
    if names != list(dataset.classes):
        differ = next((i for i, (a, b) in enumerate(zip(names, dataset.classes)) if a != b),
                      min(len(names), len(dataset.classes)))
        mine = names[differ] if differ < len(names) else "(none)"
        theirs = dataset.classes[differ] if differ < len(dataset.classes) else "(none)"
        raise OblivioError(f"{where} was trained on other classes than {dataset.uri} "
                           f"({len(names)} vs {len(dataset.classes)}; class {differ} is "
                           f"{mine!r} vs {theirs!r})")
    channels, height, width = dataset.image_shape
    if (config["in_chans"], config["img_size"]) != (channels, height):
        raise OblivioError(f"{where} takes {config['in_chans']}-channel {config['img_size']} px "
                           f"images, {dataset.uri} has {channels}-channel {height}x{width}")
