"""``oblivio evaluate``: one report on whether a model forgot, kept the rest, and resists
membership inference, beside the original and the retrain oracle when given.

Each model's train and test predictions are computed once and shared by every metric.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import asdict

import numpy as np
import torch

from oblivio.data import open_dataset
from oblivio.data.checks import ensure_checked
from oblivio.data.reader import Dataset
from oblivio.data.sample_ids import ids_sha256, read_sample_ids, write_sample_ids
from oblivio.data.unseen import evaluation_rows, reference_images
from oblivio.errors import OblivioError
from oblivio.evaluation.gates import SHADOWS_TPR, Gates, report_gate
from oblivio.evaluation.metrics import (
    CLASS_KEYS,
    DIRECTIONS,
    INSTANCE_KEYS,
    RELEARN_KEYS,
    ForgetSpec,
    compute_metrics,
    mia_features,
    per_class_accuracy,
)
from oblivio.evaluation.outputs import collect_outputs, gather_shards
from oblivio.evaluation.pool import pool_evidence, read_pool
from oblivio.evaluation.reestimate import REESTIMATE_KEYS, reestimated_accuracy
from oblivio.evaluation.relearn import RelearnSettings, relearn
from oblivio.evaluation.report import write_report
from oblivio.evaluation.shadows import Shadows, judged_part, shadow_evidence
from oblivio.models.checkpoint import check_fits, load_model, read_config
from oblivio.models.forgotten import forgotten_ids, recorded_ids
from oblivio.training import resolve_device


def forget_spec(dataset: Dataset, classes: str | list[int] | None,
                ids_file: str | os.PathLike[str] | None) -> tuple[ForgetSpec, dict]:
    """The forget set as train/test masks, and how the report names it."""
    if (classes is None) == (ids_file is None):
        raise OblivioError("give exactly one of --forget-classes and --forget-ids")
    train, test = dataset.split("train"), dataset.split("test")
    train_mask = np.zeros(len(train), dtype=bool)
    test_mask = np.zeros(len(test), dtype=bool)
    if classes is not None:
        chosen = dataset.class_indices(classes)
        if len(chosen) >= dataset.num_classes:
            raise OblivioError("cannot evaluate forgetting every class: nothing is retained")
        train_mask[np.isin(train.labels.numpy(), chosen)] = True
        test_mask[np.isin(test.labels.numpy(), chosen)] = True
        return ForgetSpec(chosen, train_mask, test_mask), {"forget_classes": chosen}
    ids = read_sample_ids(ids_file)
    train_mask[train.indices(ids)] = True
    if train_mask.all():
        raise OblivioError("the forget ids cover the whole train split: nothing is retained")
    rows, used = evaluation_rows(dataset)
    attack = np.zeros(len(test), dtype=bool)
    attack[rows] = True
    return ForgetSpec([], train_mask, test_mask, attack_test=attack), {
        "forget_ids_sha256": ids_sha256(ids), "forget_ids_count": len(ids),
        "unseen_images": {"evaluation": used, "reference": reference_images(
            dataset)[2]}}


def judge_among_known(spec: ForgetSpec, named: dict, dataset: Dataset, config: dict) -> None:
    """A deletion request on a model that has forgotten classes is judged among the classes
    it still knows: the forgotten classes' test images (misclassified, at a loss no kept image
    has) are no unseen images a retrain would see, and their training images are neither kept
    nor part of the request's evidence (those gone with their class were judged there)."""
    classes = sorted(config.get("provenance", {}).get("forgotten_classes") or [])
    if spec.mode != "instance" or not classes:
        return
    spec.outside_train = np.isin(dataset.split("train").labels.numpy(), classes)
    spec.outside_test = np.isin(dataset.split("test").labels.numpy(), classes)
    named["judged_without_classes"] = classes
    named["forgotten_with_class"] = int((spec.train_mask & spec.outside_train).sum())
    if not (spec.train_mask & ~spec.outside_train).any():
        raise OblivioError(f"every forget id is in a forgotten class ({classes}): the request "
                           "went with its classes, nothing is left to judge")


def _model_metrics(model: torch.nn.Module, dataset: Dataset, spec: ForgetSpec, device: str,
                   seed: int, svc_cap: int | None, progress: bool,
                   train_parts: list[str] | None = None,
                   relearning: RelearnSettings | None = None) -> tuple[dict, list[float], dict]:
    split = dataset.split("train")
    train = (collect_outputs(model, split, device=device, progress=progress,
                             desc="predict train") if train_parts is None else
             gather_shards(train_parts, model.config["weights_sha256"], len(split)))
    test = collect_outputs(model, dataset.split("test"), device=device, progress=progress,
                           desc="predict test")
    metrics = compute_metrics(train, test, spec, dataset.num_classes, seed, svc_cap)
    if spec.mode == "class":
        metrics |= reestimated_accuracy(model, split, dataset.split("test"), spec.train_mask,
                                        spec.test_mask, device=device)
    curve = None
    if relearning is not None:
        metrics |= relearn(model, split, dataset.split("test"), spec.classes, relearning,
                           device, progress)
        curve = metrics.pop("relearn_curve")
    train_features = mia_features(train)
    features = {"retain_train": {k: v[~spec.train_mask] for k, v in train_features.items()},
                "forget_train": {k: v[spec.train_mask] for k, v in train_features.items()},
                "test": mia_features(test)}
    return metrics, per_class_accuracy(test, dataset.num_classes), {
        "config": model.config, "features": features, "relearn_curve": curve}


def _load_checked(path: str, dataset: Dataset, device: str) -> torch.nn.Module:
    model = load_model(path, device)
    check_fits(model.config, dataset, f"model {path}")
    return model


def _check_agrees(config: dict, named: dict, dataset: Dataset, path: str) -> None:
    """The forget spec of a report is what the model says it has forgotten: a report on class
    2 of a model that forgot class 7 would count class 7 as retained and look plausible."""
    provenance = config.get("provenance", {})
    recorded = sorted(provenance.get("forgotten_classes") or [])
    if "forget_classes" in named and recorded and recorded != sorted(named["forget_classes"]):
        shown = ",".join(str(c) for c in recorded)
        raise OblivioError(
            f"model {path} has forgotten class(es) {shown} "
            f"({', '.join(dataset.classes[c] for c in recorded)}), not "
            f"{','.join(str(c) for c in named['forget_classes'])}: evaluate it with "
            f"--forget-classes {shown}")
    digest, count, _ = recorded_ids(config)
    if "forget_ids_sha256" in named and count and digest != named["forget_ids_sha256"]:
        raise OblivioError(f"model {path} has forgotten {count} training images, "
                           f"not the {named['forget_ids_count']} of --forget-ids: give the "
                           "union of every request it honoured")


def _clean(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _gap(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else _clean(a - b)


def evaluate(model: str, data: str, out: str | os.PathLike[str],
             forget_classes: str | list[int] | None = None,
             forget_ids: str | os.PathLike[str] | None = None, original: str | None = None,
             oracle: str | None = None, device: str = "auto", seed: int = 0,
             svc_cap: int | None = 5000, progress: bool = True,
             train_parts: dict[str, list[str]] | None = None,
             relearning: RelearnSettings | None = None, gates: Gates | None = None,
             oracle_pool: str | None = None, shadows: str | None = None) -> dict:
    """Evaluate ``model`` (and ``original``/``oracle`` beside it); write report.json, .md and
    .html to ``out``. Every input is checked before any prediction; ``out`` appears whole or
    not at all. ``train_parts`` (per role) gives a model's training-split outputs as the
    shard files of :func:`predict_shard` instead of predicting them here. ``relearning``
    (class mode) adds the relearning measurement of every model. The report's ``gate`` is the
    verdict promotion would give under ``gates``; ``oracle_pool`` (a deletion request's pool
    of retrains) and ``shadows`` (the original's shadow models) add per-example evidence and
    their gates."""
    start = time.perf_counter()
    device = resolve_device(device)
    dataset = open_dataset(data)
    spec, named = forget_spec(dataset, forget_classes, forget_ids)
    if relearning is not None:
        if spec.mode != "class":
            raise OblivioError("relearning is measured for forgotten classes, not instances")
        relearning.schedule()
    gates = gates or Gates()
    if oracle_pool is not None:
        if spec.mode != "instance":
            raise OblivioError("an oracle pool judges a deletion request (--forget-ids), not "
                               "classes")
        read_pool(oracle_pool)  # a missing or unfinished pool is one line before predictions
    if shadows is not None:
        if spec.mode != "instance":
            raise OblivioError("shadows judge a deletion request (--forget-ids), not classes")
        Shadows(shadows, data, forget_ids)  # checked before predictions
    paths = {"model": model, "original": original, "oracle": oracle}
    # every checkpoint is loaded and checked before minutes of predictions
    models = {role: _load_checked(path, dataset, device) for role, path in paths.items()
              if path is not None}
    _check_agrees(models["model"].config, named, dataset, model)
    judge_among_known(spec, named, dataset, models["model"].config)
    ensure_checked(dataset)
    results = {role: _model_metrics(m, dataset, spec, device, seed, svc_cap, progress,
                                    (train_parts or {}).get(role), relearning)
               for role, m in models.items()}
    keys = CLASS_KEYS + REESTIMATE_KEYS if spec.mode == "class" else INSTANCE_KEYS
    keys = keys + (RELEARN_KEYS if relearning is not None else [])
    metrics, _, extra = results["model"]
    report: dict = {k: _clean(metrics[k]) for k in keys}
    if "oracle" in results:
        for k in keys:
            report[f"{k}_gap_to_oracle"] = _gap(metrics[k], results["oracle"][0][k])
    config = extra["config"]
    report.update({
        "mode": spec.mode,
        **named,
        "forget_train_samples": int(spec.train_mask.sum()),
        "directions": {k: DIRECTIONS[k] for k in keys},
        "models": {role: {"path": str(paths[role]),
                          "weights_sha256": res[2]["config"]["weights_sha256"],
                          "metrics": {k: _clean(res[0][k]) for k in keys},
                          **({"relearn_curve": res[2]["relearn_curve"]}
                             if relearning is not None else {})}
                   for role, res in results.items()},
        "per_class_test_acc": {role: res[1] for role, res in results.items()},
        "class_names": dataset.classes,
        "alpha_grid": config.get("provenance", {}).get("alpha_grid"),
        "alpha": config.get("provenance", {}).get("alpha"),
        **{key: config.get("provenance", {}).get(key) for key in ("ratio_grid", "ratio", "rounds",
                                                                 "blocks", "blocks_total")},
        "seed": seed,
        "svc_samples_per_side": svc_cap,
        "relearning": None if relearning is None else asdict(relearning),
    })
    pool_reasons: list[str] = []
    if oracle_pool is not None:
        report["pool"] = pool_evidence(oracle_pool, data, model, named["forget_ids_sha256"],
                                       gates.pool_max_tpr_excess, device)
        pool_reasons = report["pool"]["reasons"]
    if shadows is not None:
        report["shadows"] = shadow_evidence(shadows, data, model, forget_ids,
                                            gates.pool_max_tpr_excess, device)
        evidence = report["shadows"]["model"]  # a metric: promotion's gates read it too
        report[SHADOWS_TPR] = evidence[judged_part(evidence)]["tpr_at_1pct_fpr"]
    report["gate"] = report_gate(report, gates, pool_reasons)
    report["seconds"] = time.perf_counter() - start
    write_report(report, extra["features"], out)
    return report


def evaluate_unlearned(unlearned: str, data: str, out: str | os.PathLike[str],
                       original: str | None = None, device: str = "auto",
                       progress: bool = False,
                       train_parts: dict[str, list[str]] | None = None,
                       relearning: RelearnSettings | None = None,
                       request_ids: str | None = None, shadows: str | None = None) -> dict:
    """Evaluate an unlearned model on everything it has forgotten, as its provenance records
    it (this run's request and earlier ones): its classes, or after deletion requests all the
    training images it has forgotten (the model records them by digest: they are read from
    ``request_ids``, the file of the request it honoured, and the ledger). What the
    pipeline's evaluate step runs; its ``train_parts`` (roles ``model`` and ``original``)
    come from the sharded predict steps. ``relearning`` applies to forgotten classes, and
    ``shadows`` (the original's, `oblivio pool shadows`) to deletion requests; each is left
    out where it does not apply, so one pipeline parameter serves both kinds of part."""
    config = read_config(unlearned)
    provenance = config.get("provenance", {})
    with tempfile.TemporaryDirectory() as tmp:
        spec: dict = {"forget_classes": provenance.get("forgotten_classes")}
        if provenance.get("mode") == "instance":
            known = read_sample_ids(request_ids).to_pylist() if request_ids else ()
            write_sample_ids(f"{tmp}/forgotten.parquet",
                             forgotten_ids(config, unlearned, known))
            spec = {"forget_ids": f"{tmp}/forgotten.parquet"}
        if not spec.get("forget_classes") and "forget_ids" not in spec:
            raise OblivioError(f"{unlearned} records nothing forgotten: not an unlearned model")
        if "forget_ids" in spec:
            relearning = None
        else:
            shadows = None
        return evaluate(unlearned, data, out, original=original, device=device,
                        progress=progress, train_parts=train_parts, relearning=relearning,
                        shadows=shadows, **spec)
