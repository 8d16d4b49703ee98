"""One baseline run on a class or instance request, into the same model directory as every
other method (``forget_with_baseline``): fine-tune, NegGrad, NegGrad+, random label, SSD, SCRUB
and SalUn, the retrain oracle, and relabel (instances/relabel.py), which shares their loop.
Each changes a model in place given the training rows to forget and to keep, and reports its
steps and seconds."""

from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np
import torch
from torch import nn

from oblivio.data.unseen import reference_images
from oblivio.errors import OblivioError
from oblivio.models.inference import accuracy
from oblivio.models.networks import build
from oblivio.training import recipe_for, resolve_device, seed_everything, train
from oblivio.unlearn.baselines.gradient import finetune, neggrad, random_label
from oblivio.unlearn.baselines.salun import salun
from oblivio.unlearn.baselines.scrub import scrub
from oblivio.unlearn.baselines.ssd import ssd
from oblivio.unlearn.guard import mean_loss
from oblivio.unlearn.instances.relabel import relabel
from oblivio.unlearn.requests import ForgetRequest, load_request, save_unlearned
from oblivio.unlearn.tuning import BaselineSettings

BASELINES = ("finetune", "neggrad", "neggrad+", "random-label", "relabel", "scrub", "salun",
             "ssd", "retrain")


def retrain(request: ForgetRequest, device: str, progress: bool = True) -> tuple[nn.Module, dict]:
    """The oracle: a fresh model trained on D_r with the original model's recipe."""
    config = request.model.config
    training = config.get("provenance", {}).get("training") or {}
    recipe = recipe_for(config["arch"], **training.get("recipe", {}))
    seed_everything(recipe.seed)
    model = build(config["arch"], config["num_classes"], config["in_chans"], config["img_size"],
                  config["normalization"])
    result = train(model, request.train, request.retain_rows, recipe, None, device, progress)
    return model, {"recipe": asdict(recipe), "recipe_from": "parent" if training else "default",
                   "train_rows": result.train_rows}


def forget_with_baseline(model_dir: str, data: str, out: str, method: str,
                         classes: str | list[int] | None = None, ids_file: str | None = None,
                         settings: BaselineSettings = BaselineSettings(), device: str = "auto",
                         progress: bool = True) -> dict:
    """Run one baseline on a class or instance request and write the model directory."""
    if method not in BASELINES:
        raise OblivioError(f"unknown baseline {method!r}; use one of {', '.join(BASELINES)}")
    settings.check()
    device = resolve_device(device)
    request = load_request(model_dir, data, classes, ids_file, device)
    target = settings.forget_target
    if target is None:
        target = 0.0 if request.mode == "instance" else 0.01
    model = request.model.to(device, memory_format=torch.channels_last)
    split, f_rows, r_rows = request.train, request.forget_rows, request.retain_rows
    t = time.perf_counter()
    if method == "finetune":
        result = finetune(model, split, r_rows, settings, device, progress)
    elif method in ("neggrad", "neggrad+", "relabel"):
        if method == "relabel" and request.mode != "instance":
            raise OblivioError("relabel forgets training images: give --forget-ids")
        scale = 1.0
        if settings.retain_guard is not None:  # the unseen images' loss scale
            test = request.dataset.split("test")
            rows = np.sort(np.random.default_rng(settings.seed).permutation(len(test))[:2000])
            scale = mean_loss(model, test, rows, device)
        if method == "relabel":
            result = relabel(model, split, f_rows, r_rows, settings, target, device, progress,
                             scale)
        else:
            result = neggrad(model, split, f_rows, r_rows, settings, target, device,
                             method == "neggrad+", progress, scale)
    elif method == "random-label":
        result = random_label(model, split, f_rows, r_rows, request.dataset.num_classes,
                              settings, target, device, progress)
    elif method == "scrub":
        unseen = reference_images(request.dataset)[:2] if settings.rewind else None
        result = scrub(model, split, f_rows, r_rows, settings, device, progress, unseen)
    elif method == "salun":
        result = salun(model, split, f_rows, r_rows, request.dataset.num_classes, settings,
                       target, device, progress)
    elif method == "ssd":
        result = ssd(model, split, f_rows, np.arange(len(split)), settings, device, progress)
    else:
        fresh, result = retrain(request, device, progress)
        fresh.config = request.model.config
        request.model = fresh
    result["seconds"] = {"unlearn": time.perf_counter() - t}
    result["forget_target"] = target
    if request.mode == "instance":  # every image forgotten so far, this request's included
        union = split.indices(request.forgotten_ids)
        result["forgotten_acc"] = accuracy(model, split, union, device)
    return save_unlearned(request, out, method, asdict(settings), result, device)
