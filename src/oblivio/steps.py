"""Forgetting as separately runnable steps over files, one per pipeline step
(docs/architecture.md), above the methods, the evaluation and the registry it glues together:
classes: sample -> capture (retain and forget, each over shards, merged) -> subspaces ->
project, or sample -> capture -> contrast;
instances: sample (check the deletion request) -> unlearn.

Each step reads what the previous one wrote (sample-id Parquet files, safetensors statistics and
subspaces, model directories), so a step can run in its own process or pod.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from oblivio.data import open_dataset
from oblivio.data.sample_ids import (
    ids_sha256,
    read_sample_ids,
    train_rows_of,
    write_sample_ids,
)
from oblivio.data.storage import staged_dir, write_bytes
from oblivio.errors import OblivioError
from oblivio.evaluation.gates import Gates
from oblivio.evaluation.shadows import check_shadows
from oblivio.models.checkpoint import load_model
from oblivio.models.forgotten import classes_after, forgotten_ids, refuse_again
from oblivio.shards import shard_rows
from oblivio.tracking.registry import forgotten, resolve_version, version_config
from oblivio.tracking.store import connect
from oblivio.training import resolve_device
from oblivio.unlearn.classes.alpha_selection import FORGET_MARGIN, alpha_pairs
from oblivio.unlearn.classes.forget import (
    BatchNormRounds,
    ClassSampling,
    ProjectionSettings,
    contrast_and_save,
    project_and_save,
)
from oblivio.unlearn.classes.grid_tables import alpha_grid_markdown, ratio_grid_markdown
from oblivio.unlearn.classes.plan import Plan, draw_classes
from oblivio.unlearn.classes.projection import eigen_operators
from oblivio.unlearn.classes.ratio_selection import contrast_taus
from oblivio.unlearn.classes.samples import ClassSamples
from oblivio.unlearn.classes.statistics import (
    capture_statistics,
    load_statistics,
    merge_statistics,
    save_statistics,
)
from oblivio.unlearn.classes.subspaces import compute_subspaces, load_subspaces, save_subspaces
from oblivio.unlearn.methods import check_pipeline_params, method_for
from oblivio.unlearn.requests import check_request, forgotten_classes

SETS = ("retain", "forget", "validation")
PLAN_FILE = "plan.json"


def sample_step(model_dir: str, data: str, classes: str | list[int], out_dir: str,
                retain_per_class: int = 100, forget_samples: int = 250, val_per_class: int = 50,
                val_forget_samples: int = 250, seed: int = 0,
                column_budget: float = ClassSampling.column_budget) -> dict:
    """Draw the retain, forget and validation sets; write each as sample ids (Parquet) plus
    ``plan.json`` (the classes to forget now and in all, and the capture's column budget, so
    every shard of the capture keeps the same columns as ``forget_classes`` would)."""
    plan = draw_classes(model_dir, data, classes, retain_per_class, forget_samples,
                        val_per_class, seed, val_forget_samples)
    summary = {"forget_classes": plan.forget_new, "forgotten_classes": plan.forget_all,
               "retain_per_class": retain_per_class, "seed": seed,
               "column_budget": column_budget or None,
               **{name: len(getattr(plan.sets, name)) for name in SETS}}
    with staged_dir(out_dir) as staged:  # the lists and their plan, whole or not at all
        for name in SETS:
            write_sample_ids(os.path.join(staged, f"{name}.parquet"),
                             plan.train.ids_at(getattr(plan.sets, name)))
        Path(staged, PLAN_FILE).write_text(json.dumps(summary, indent=2))
    return summary


def sample_request_step(model_dir: str, data: str, forget_classes: str, ids_uri: str,
                        out_dir: str, retain_per_class: int = 100, forget_samples: int = 250,
                        val_per_class: int = 50, val_forget_samples: int = 250,
                        seed: int = 0) -> dict:
    """The pipeline's sample step: a deletion request (``ids_uri`` set) is checked and kept,
    otherwise the class sample sets are drawn."""
    if ids_uri:
        return sample_instances_step(model_dir, data, ids_uri, out_dir)
    return sample_step(model_dir, data, forget_classes, out_dir, retain_per_class,
                       forget_samples, val_per_class, val_forget_samples, seed)


def sample_instances_step(model_dir: str, data: str, ids_uri: str, out_dir: str) -> dict:
    """Check a deletion request against the model and data (known training ids, none already
    forgotten) and keep it as ``forget.parquet`` beside ``plan.json``."""
    request = check_request(model_dir, data, ids_file=ids_uri)
    summary = {"mode": "instance", "forget_ids_count": len(request.ids),
               "forget_ids_sha256": ids_sha256(request.ids),
               "forgotten_ids_count": len(request.forgotten_ids)}
    with staged_dir(out_dir) as staged:
        write_sample_ids(os.path.join(staged, "forget.parquet"), request.ids)
        Path(staged, PLAN_FILE).write_text(json.dumps(summary, indent=2))
    return summary


def instance_step(model_dir: str, data: str, samples_dir: str, out: str, method: str,
                  options: dict, device: str = "auto") -> dict:
    """Forget the instances of ``sample_instances_step`` with a registered instance method and
    its ``options`` (those of another method are refused); write the unlearned model."""
    chosen = method_for(method, None, samples_dir)  # refuses a method that forgets classes
    settings = chosen.settings_from(options)
    summary = json.loads(Path(samples_dir, PLAN_FILE).read_text())
    if summary.get("mode") != "instance":
        raise OblivioError("the sample sets name classes, not a deletion request")
    return chosen.run(model_dir, data, out, None, str(Path(samples_dir, "forget.parquet")),
                      settings, device, False)


def capture_step(model_dir: str, data: str, ids_file: str, out_file: str,
                 batch_size: int = 250, device: str = "auto", shard: int = 0,
                 shards: int = 1) -> dict:
    """Per-layer input statistics of one sample list (or of its slice ``shard`` of
    ``shards``), as one safetensors file, with the column budget of the ``plan.json`` beside
    the list (none without one)."""
    device = resolve_device(device)
    model = load_model(model_dir, device)
    train = open_dataset(data).split("train")
    every = train.indices(read_sample_ids(ids_file))
    rows = shard_rows(every, shard, shards)
    plan_file = Path(ids_file).with_name(PLAN_FILE)
    budget = json.loads(plan_file.read_text()).get("column_budget") if plan_file.exists() \
        else None
    start = time.perf_counter()
    stats = capture_statistics(model, train, rows, batch_size, device, column_budget=budget,
                               total_samples=len(every))
    save_statistics(stats, out_file)
    return {"samples": stats.samples, "layers": len(stats.layers), "shard": shard,
            "shards": shards, "seconds": time.perf_counter() - start}


def merge_statistics_step(part_files: list[str], out_file: str) -> dict:
    """The statistics of a whole sample list from those of its shards, in shard order, one
    file at a time: a resnet18's statistics are 0.74 GB on 28x28 images, and holding 8 shards
    at once took 7.5 GB."""
    if not part_files:
        raise OblivioError("no statistics to merge")
    start = time.perf_counter()
    merged = load_statistics(part_files[0])
    for part in part_files[1:]:
        merged = merge_statistics([merged, load_statistics(part)])
    save_statistics(merged, out_file)
    return {"samples": merged.samples, "layers": len(merged.layers), "parts": len(part_files),
            "seconds": time.perf_counter() - start}


def subspaces_step(retain_file: str, forget_file: str, out_file: str) -> dict:
    """Retain and forget eigenbases of every layer, as one safetensors file."""
    start = time.perf_counter()
    subspaces = compute_subspaces(load_statistics(retain_file), load_statistics(forget_file))
    save_subspaces(subspaces, out_file)
    return {"layers": len(subspaces), "seconds": time.perf_counter() - start}


def _mode(name: str, mode: str) -> bool:
    """True for auto; the pipeline passes modes as strings, so a typo is one error here."""
    if mode not in ("auto", "fixed"):
        raise OblivioError(f"{name} must be auto or fixed, got {mode!r}")
    return mode == "auto"


def project_step(model_dir: str, data: str, subspaces_file: str, samples_dir: str, out: str,
                 alpha_mode: str = "auto", alpha_r: float = 100.0, alpha_f: float = 3.0,
                 forget_target: float = 0.01, forget_margin: float = FORGET_MARGIN,
                 device: str = "auto", grid_file: str | None = None,
                 bn_rounds: int = ProjectionSettings.bn_rounds) -> dict:
    """Project the weights with alpha chosen on the validation set (``alpha_mode`` auto) or
    the fixed pair, then at most ``bn_rounds`` batch-norm rounds (``BatchNormRounds``: they
    capture the samples again here, with the plan's column budget); write the unlearned
    model, and the scored grid as Markdown to ``grid_file``."""
    start = time.perf_counter()
    alpha = "auto" if _mode("alpha_mode", alpha_mode) else (alpha_r, alpha_f)
    device = resolve_device(device)
    pairs = alpha_pairs(alpha, forget_target, forget_margin)
    plan, summary = _plan_of(model_dir, data, samples_dir, device)
    operators = eigen_operators(load_subspaces(subspaces_file), device)
    provenance = {"solver": "eigen", "seed": summary["seed"], "seconds": {}}
    provenance = project_and_save(plan, operators, pairs, out, forget_target, forget_margin,
                                  device, False, provenance, start,
                                  BatchNormRounds(bn_rounds,
                                                  column_budget=summary.get("column_budget")))
    if grid_file:
        write_bytes(grid_file, alpha_grid_markdown(provenance).encode())
    return provenance


def contrast_step(model_dir: str, data: str, retain_file: str, forget_file: str,
                  samples_dir: str, out: str, ratio_mode: str = "auto", ratio: float = 8.0,
                  rounds: int = 2, forget_target: float = 0.01, device: str = "auto",
                  blocks: int = 0, grid_file: str | None = None) -> dict:
    """Remove the energy-contrast directions (threshold, rounds and depth chosen on the
    validation set with ``ratio_mode`` auto; ``blocks`` 0 chooses the depth); write the
    unlearned model, and the scored grid as Markdown to ``grid_file``. Later rounds capture
    the edited model's statistics here."""
    start = time.perf_counter()
    ratio = "auto" if _mode("ratio_mode", ratio_mode) else ratio
    device = resolve_device(device)
    taus = contrast_taus(ratio, rounds, forget_target)
    plan, summary = _plan_of(model_dir, data, samples_dir, device)
    provenance = contrast_and_save(plan, load_statistics(retain_file),
                                   load_statistics(forget_file), taus, rounds, out,
                                   forget_target, device, False,
                                   {"seed": summary["seed"], "seconds": {}},
                                   start, blocks=blocks or "auto")
    if grid_file:
        write_bytes(grid_file, ratio_grid_markdown(provenance).encode())
    return provenance


def _plan_of(model_dir: str, data: str, samples_dir: str, device: str) -> tuple[Plan, dict]:
    """The plan the sample step drew, checked against the model, and the step's summary
    (seed, column budget) read with it."""
    summary = json.loads(Path(samples_dir, PLAN_FILE).read_text())
    if summary.get("mode") == "instance":
        raise OblivioError("the sample sets name a deletion request, not classes")
    model = load_model(model_dir, device)
    expected = set(summary["forget_classes"]) | set(forgotten_classes(model.config))
    if sorted(summary["forgotten_classes"]) != sorted(expected):
        raise OblivioError("the sample sets were drawn for another model")
    train = open_dataset(data).split("train")
    rows = {name: train.indices(read_sample_ids(Path(samples_dir, f"{name}.parquet")))
            for name in SETS}
    plan = Plan(train, summary["forget_classes"], summary["forgotten_classes"],
                ClassSamples(*(np.asarray(rows[n]) for n in SETS)), summary["retain_per_class"],
                model)
    return plan, summary


def check_request_step(model_uri: str, data: str, forget_classes: str, ids_uri: str,
                       params: dict) -> dict:
    """Everything about a run that is wrong for good, checked before any step works: the
    choices (``check_pipeline_params``), the registered model, the dataset, the classes (known
    to the dataset, not already forgotten by the model) or the deletion request (training ids
    of the dataset). The pipeline runs it first and never retries it: a retry cannot fix it."""
    check_pipeline_params({**params, "forget_ids_uri": ids_uri})
    Gates(**{k: v for k, v in params.items() if k in Gates.__dataclass_fields__})
    connect()
    version = resolve_version(model_uri)
    dataset = open_dataset(data)
    if params.get("shadows_uri"):  # a batch's classes part carries them too: checked for both
        check_shadows(params["shadows_uri"], dataset)
    already, _ = forgotten(version.tags)
    if ids_uri:
        ids = read_sample_ids(ids_uri)
        train_rows_of(dataset, dataset.split("train"), ids, ids_uri)
        where = f"models:/{version.name}/{version.version}"
        refuse_again(ids.to_pylist(), forgotten_ids(version_config(where), where), where)
        return {"version": str(version.version), "forget_ids_count": len(ids)}
    classes = dataset.class_indices(forget_classes)
    classes_after(model_uri, classes, already, dataset.classes)
    return {"version": str(version.version), "forget_classes": classes}
