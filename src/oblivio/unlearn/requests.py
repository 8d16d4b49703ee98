"""A checked forget request, for every method: which training rows to forget now, which are kept,
and what the model had already forgotten (continual requests start from the current model).

Everything is validated before any compute, and the unlearned model is written in one place, so
every method leaves the same model directory with the same provenance keys.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass

import numpy as np
import torch

from oblivio.data import open_dataset
from oblivio.data.checks import ensure_checked
from oblivio.data.reader import Dataset, Split
from oblivio.data.sample_ids import ids_sha256, read_sample_ids, train_rows_of
from oblivio.errors import OblivioError
from oblivio.models.checkpoint import check_fits, load_model, save_model
from oblivio.models.config import read_config
from oblivio.models.forgotten import forgotten_ids, provenance_after, refuse_again
from oblivio.models.networks import ImageClassifier


def peak_memory(device: str) -> dict[str, float]:
    """This process's peak host memory, and its peak GPU memory when it ran on CUDA (MiB)."""
    peak = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.startswith("cuda"):
        peak["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return peak


@dataclass
class CheckedRequest:
    """One request against one model, checked against the model's config and the data:
    classes or training sample ids, never both. The steps that only draw or keep the rows
    (the pipeline's sample step) need no weights, so they never load them."""

    config: dict
    dataset: Dataset
    train: Split
    classes: list[int]
    forgotten_classes: list[int]
    ids: list[str]
    forgotten_ids: list[str]
    forget_rows: np.ndarray
    retain_rows: np.ndarray
    started: float

    @property
    def mode(self) -> str:
        return "instance" if self.ids else "class"

    def known_rows(self, split: Split) -> np.ndarray:
        """Rows of ``split`` whose class the model still knows. A retrain without the
        forgotten classes never meets them, so a deletion request is matched and judged
        among these: the forgotten classes' images sit at a loss no kept image has."""
        return np.flatnonzero(~np.isin(split.labels.numpy(), self.forgotten_classes))

    @property
    def live_forget_rows(self) -> np.ndarray:
        """The forget rows whose class is not forgotten: the rest are gone with their class
        already, and stay recorded as forgotten ids."""
        labels = self.train.labels.numpy()[self.forget_rows]
        return self.forget_rows[~np.isin(labels, self.forgotten_classes)]


@dataclass
class ForgetRequest(CheckedRequest):
    """A checked request with the model it is made against, loaded."""

    model: ImageClassifier


def forgotten_classes(config: dict) -> list[int]:
    """Classes a model directory has already forgotten, from its provenance."""
    return list(config.get("provenance", {}).get("forgotten_classes", []))


def open_matching(model_dir: str, data: str) -> tuple[dict, Dataset]:
    """The model directory's config and its dataset, checked to fit each other (classes, image
    shape), without loading the weights."""
    config = read_config(model_dir)
    dataset = open_dataset(data)
    check_fits(config, dataset, f"model {model_dir}")
    ensure_checked(dataset)
    return config, dataset


def check_request(model_dir: str, data: str, classes: str | list[int] | None = None,
                  ids_file: str | os.PathLike[str] | None = None) -> CheckedRequest:
    """Check the request against the model's config and the data: exactly one of classes and
    ids; known, training-split, not yet forgotten; something left to keep."""
    if (classes is None) == (ids_file is None):
        raise OblivioError("give exactly one of --classes and --forget-ids")
    started = time.perf_counter()
    config, dataset = open_matching(model_dir, data)
    train = dataset.split("train")
    done_classes, done_ids = forgotten_classes(config), forgotten_ids(config, model_dir)
    labels = train.labels.numpy()
    new_classes: list[int] = []
    new_ids: list[str] = []
    if classes is not None:
        new_classes = dataset.class_indices(classes)
        forget_rows = np.flatnonzero(np.isin(labels, new_classes))
        absent = [c for c in new_classes if not (labels == c).any()]
        if absent:
            raise OblivioError(f"class {absent[0]} has no training samples in {data}")
        if len(set(new_classes) | set(done_classes)) >= dataset.num_classes:
            raise OblivioError("cannot forget every class: nothing would be left to keep")
    else:
        ids = read_sample_ids(ids_file)
        forget_rows = train_rows_of(dataset, train, ids, os.fspath(ids_file))
        new_ids = ids.to_pylist()
        refuse_again(new_ids, done_ids, model_dir)
    all_classes = sorted(set(done_classes) | set(new_classes))
    all_ids = sorted(set(done_ids) | set(new_ids))
    keep = ~np.isin(labels, all_classes)
    if all_ids:
        keep[train.indices(all_ids)] = False
    if not keep.any():
        raise OblivioError("the request leaves no training data to keep")
    return CheckedRequest(config, dataset, train, new_classes, all_classes, new_ids, all_ids,
                          forget_rows, np.flatnonzero(keep), started)


def load_request(model_dir: str, data: str, classes: str | list[int] | None = None,
                 ids_file: str | os.PathLike[str] | None = None, device: str = "cpu"
                 ) -> ForgetRequest:
    """Check the request (``check_request``), then load the model it is made against."""
    checked = check_request(model_dir, data, classes, ids_file)
    model = load_model(model_dir, device)
    return ForgetRequest(**vars(checked), model=model)


def save_unlearned(request: ForgetRequest, out: str, method: str, params: dict,
                   result: dict, device: str) -> dict:
    """Write the unlearned model directory; return the provenance recorded in its config."""
    config = request.model.config
    training = config.get("provenance", {}).get("training")  # the recipe, for retrains
    seconds = dict(result.pop("seconds", {}))
    seconds["total"] = time.perf_counter() - request.started
    named = ({"forget_ids_sha256": ids_sha256(request.ids), "forget_ids_count": len(request.ids)}
             if request.mode == "instance" else {"forget_classes": request.classes})
    named |= provenance_after(config, request.ids, request.forgotten_ids)
    provenance = {
        "kind": "unlearned",
        "method": method,
        "params": params,
        "mode": request.mode,
        **named,
        "forgotten_classes": request.forgotten_classes,
        **result,
        "seconds": seconds,
        "device": device,
        **peak_memory(device),
        "parent": {"weights_sha256": config["weights_sha256"]},
        **({"training": training} if training else {}),
    }
    save_model(request.model.cpu(), out, arch=config["arch"], class_names=config["class_names"],
               img_size=config["img_size"], parent_fingerprint=config["weights_sha256"],
               provenance=provenance)
    return provenance
