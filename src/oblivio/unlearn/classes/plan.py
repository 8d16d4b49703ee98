"""A checked class-forgetting request (model, data, the sample sets drawn for it), the capture of
its statistics, and the model directory every class method writes at the end."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from oblivio.data.reader import Split
from oblivio.errors import OblivioError
from oblivio.models.checkpoint import load_model, save_model
from oblivio.models.forgotten import carried, classes_after
from oblivio.training import seed_everything
from oblivio.unlearn.classes.samples import ClassSamples, draw_class_samples
from oblivio.unlearn.classes.statistics import Statistics, capture_sets
from oblivio.unlearn.requests import forgotten_classes, open_matching, peak_memory


@dataclass
class ClassDraw:
    """A checked class-forgetting request and the sample rows drawn for it: all that the
    pipeline's sample step needs, made from the model's config without its weights."""

    train: Split
    forget_new: list[int]
    forget_all: list[int]
    sets: ClassSamples
    retain_per_class: int


@dataclass
class Plan(ClassDraw):
    """A class draw with the model it is made against, loaded."""

    model: nn.Module


def draw_classes(model_dir: str, data: str, classes: str | list[int],
                 retain_per_class: int = 100, forget_samples: int = 1000,
                 val_per_class: int = 50, seed: int = 0,
                 val_forget_samples: int = 250) -> ClassDraw:
    """Check the request against the model's config and the data, then draw the sample sets.
    Classes the model has already forgotten stay forgotten and are never drawn as retain or
    validation samples."""
    config, dataset = open_matching(model_dir, data)
    new = dataset.class_indices(classes)
    already = forgotten_classes(config)
    forget_all = classes_after(f"model {model_dir}", new, already, dataset.classes)
    train = dataset.split("train")
    absent = [c for c in new if not bool((train.labels == c).any())]
    if absent:
        raise OblivioError(f"class {absent[0]} has no training samples in {data}")
    seed_everything(seed)
    labels = train.labels.clone()
    labels[torch.isin(labels, torch.tensor(already or [-1]))] = -1  # drawn by no one
    sets = draw_class_samples(labels, dataset.num_classes, new, retain_per_class,
                              forget_samples, val_per_class, seed, val_forget_samples)
    return ClassDraw(train, new, forget_all, sets, retain_per_class)


def plan_forgetting(model_dir: str, data: str, classes: str | list[int],
                    retain_per_class: int = 100, forget_samples: int = 1000,
                    val_per_class: int = 50, seed: int = 0, device: str = "cpu",
                    val_forget_samples: int = 250) -> Plan:
    """Draw the sample sets (``draw_classes``), then load the model they are drawn for."""
    draw = draw_classes(model_dir, data, classes, retain_per_class, forget_samples,
                        val_per_class, seed, val_forget_samples)
    return Plan(**vars(draw), model=load_model(model_dir, device))


def require_validation(plan: Plan) -> None:
    """A setting chosen on validation needs validation rows of kept and forgotten classes;
    say so before any capture (small datasets run out of rows after retain and forget)."""
    labels = plan.train.labels[torch.as_tensor(plan.sets.validation, dtype=torch.long)]
    is_forget = torch.isin(labels, torch.tensor(plan.forget_all))
    if not bool(is_forget.any()) or bool(is_forget.all()):
        raise OblivioError("no training images of both kept and forgotten classes are left for "
                           "validation after the retain and forget samples: draw fewer, or fix "
                           "the setting instead of choosing it")


def save_class_model(plan: Plan, out: str, started: float, provenance: dict) -> dict:
    """Write the edited model with its provenance (sample counts, total time, the parent's
    fingerprint and recipe added) and return that provenance."""
    provenance["seconds"]["total"] = time.perf_counter() - started
    config = plan.model.config
    provenance = {
        "kind": "unlearned",
        "forget_classes": plan.forget_new,
        "forgotten_classes": plan.forget_all,
        "samples": {"retain": len(plan.sets.retain), "forget": len(plan.sets.forget),
                    "validation": len(plan.sets.validation),
                    "retain_per_class": plan.retain_per_class},
        **peak_memory(provenance["device"]),
        **provenance,
        "parent": {"weights_sha256": config["weights_sha256"], **provenance.get("parent", {})},
    }
    training = config.get("provenance", {}).get("training")
    if training:  # the recipe, for retrains
        provenance["training"] = training
    provenance |= carried(config)  # earlier deletions, by digest
    save_model(plan.model.cpu(), out, arch=config["arch"], class_names=config["class_names"],
               img_size=config["img_size"], parent_fingerprint=config["weights_sha256"],
               provenance=provenance)
    return provenance


def capture_plan(plan: Plan, start: float, batch_size: int, device: str, progress: bool,
                 layers: list[str] | None = None, split: Split | None = None,
                 column_budget: float | None = None
                 ) -> tuple[Statistics, Statistics, dict[str, float]]:
    """Retain and forget statistics of the plan's sample sets in one pass (of every layer, or
    the named ones; from ``split``, a view of the training split, when given), with the time
    of each stage (sampling counted from ``start``)."""
    split = plan.train if split is None else split
    timings = {"load_and_sample": time.perf_counter() - start}
    t = time.perf_counter()
    stats = capture_sets(plan.model, split, {"retain": plan.sets.retain,
                                              "forget": plan.sets.forget},
                         batch_size, device, progress, "capture", layers, column_budget)
    timings["capture"] = time.perf_counter() - t
    return stats["retain"], stats["forget"], timings
