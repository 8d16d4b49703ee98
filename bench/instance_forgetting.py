"""Instance-forgetting benchmark (issue 22): k training images forgotten by each method, beside
the original model and the union retrain oracle, on the bench's Fashion-MNIST subset
(bench/instance_data.py: 20,000 training images, 64 of them mislabelled, and 5,000 held-out
validation images).

    python bench/instance_forgetting.py --k 16 128 1024 --seeds 0 1 2
    python bench/instance_forgetting.py --train-size 5000 --epochs 20 --label-smoothing 0 \
        --k 16 --seeds 0 --ablations   # a base model that memorises the mislabelled images

One oracle serves every draw: it is retrained without the union of all forget sets (the largest
k of each seed) and the mislabelled images, so every forgotten image is unseen by it. A method's
cost is the seconds from loading the request to writing the model, against the retrain's (the
base model's training, scaled to the oracle's rows, on the same machine). Writes
``bench/out/instance_forgetting.json``, or with another recipe
``instance_forgetting-<size>-e<epochs>-ls<smoothing>.json`` (the committed copies are in
``bench/results/``); each run is cached, so an interrupted bench resumes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import isolated, trained
from instance_data import (
    BenchData,
    forget_rows,
    prepare,
    union_ids,
    write_ids,
)

from oblivio.data import open_dataset
from oblivio.data.sample_ids import read_sample_ids
from oblivio.evaluation.attacks import auc_band, familiarity_auc, loss_lr_cv_accuracy
from oblivio.models import load_model
from oblivio.models.batchnorm import recalibrate_batchnorm
from oblivio.models.checkpoint import save_model
from oblivio.models.inference import predict_logits
from oblivio.training import Recipe, recipe_for, train_to_dir
from oblivio.unlearn.baselines.run import forget_with_baseline
from oblivio.unlearn.instances.l2ul import L2ULSettings, forget_instances
from oblivio.unlearn.instances.matching import MatchSettings, forget_by_matching
from oblivio.unlearn.instances.relabel import RelabelSettings
from oblivio.unlearn.tuning import BaselineSettings

RETAIN_EVAL = 5_000
RESULTS = Path(__file__).resolve().parent / "results" / "instance_forgetting.json"
#: name -> (runner, settings), or ("recalibrate", the method whose model it recalibrates)
METHODS: dict[str, tuple[str, Any]] = {
    "match": ("match", MatchSettings()),
    "finetune": ("finetune", BaselineSettings(epochs=0.2)),
    "neggrad+": ("neggrad+", BaselineSettings()),
    "neggrad+, 20 epochs": ("neggrad+", BaselineSettings(epochs=20)),
    "neggrad+, guarded, 100 epochs": ("neggrad+", BaselineSettings(epochs=100, retain_guard=0.1)),
    "relabel": ("relabel", RelabelSettings()),
    "l2ul": ("l2ul", L2ULSettings()),
    "l2ul + bn recalibration": ("recalibrate", "l2ul"),
    "l2ul, eps 4": ("l2ul", L2ULSettings(eps=4.0)),
    "l2ul, mask train": ("l2ul", L2ULSettings(mask="train")),
    "l2ul, first version": ("l2ul", L2ULSettings(eps=4.0, mask="train", joint_pass=True)),
}
RECALIBRATION_BATCHES = 20
FLIPPED_METHODS = ("match", "relabel", "neggrad+", "neggrad+, 20 epochs",
                   "neggrad+, guarded, 100 epochs", "l2ul", "finetune")


def run_method(name: str, bench: BenchData, model_dir: Path, ids_file: Path, out: Path,
               seed: int, device: str) -> dict:
    """One method on one request, in its own process: provenance, wall seconds, peak RSS."""
    runner, settings = METHODS[name]
    if runner == "recalibrate":  # post hoc, on the model the named method wrote
        return recalibrated(out.parent / out.name.replace(_slug(name), _slug(settings)), out,
                            bench, ids_file, seed)
    settings = replace(settings, seed=seed)
    if runner == "match":
        args = (forget_by_matching, str(model_dir), str(bench.data), str(ids_file), str(out),
                replace(settings, reference=str(bench.validation)), device, False)
    elif runner == "l2ul":
        args = (forget_instances, str(model_dir), str(bench.data), str(ids_file), str(out),
                settings, device, False)
    else:
        args = (forget_with_baseline, str(model_dir), str(bench.data), str(out), runner, None,
                str(ids_file), settings, device, False)
    prov, wall, peak = isolated(*args)
    return {"seconds": prov["seconds"]["total"], "wall_seconds": wall, "peak_rss_mb": peak,
            "steps": prov.get("steps"), "cap_hit": prov.get("cap_hit", False),
            "phases": prov["seconds"]}


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9+]+", "-", name).strip("-")


def recalibrated(source: Path, out: Path, bench: BenchData, ids_file: Path, seed: int) -> dict:
    """The model ``source`` with its batch-norm statistics re-estimated on retain images
    (``--recalibrate-bn``, applied after the fact): how much of a method's loss was drift of
    the statistics rather than of the weights. Its seconds are the source's plus its own."""
    model = load_model(source)
    train = open_dataset(bench.data).split("train")
    forgotten = train.indices(read_sample_ids(ids_file))  # the base model forgot nothing else
    retain = np.setdiff1d(np.arange(len(train)), forgotten)
    start = time.perf_counter()
    recalibrate_batchnorm(model, train, retain, RECALIBRATION_BATCHES, 256,
                          torch.Generator().manual_seed(seed), "cpu")
    seconds = time.perf_counter() - start
    config = model.config
    save_model(model, str(out), arch=config["arch"], class_names=config["class_names"],
               img_size=config["img_size"], parent_fingerprint=config["parent_fingerprint"],
               provenance=config["provenance"])
    prov = config["provenance"]
    total = prov["seconds"]["total"] + seconds
    return {"seconds": total, "wall_seconds": total, "peak_rss_mb": None,
            "steps": prov.get("steps"), "cap_hit": prov.get("cap_hit", False),
            "phases": {**prov["seconds"], "recalibrate_bn": seconds}}


def measure(model_dir: Path, bench: BenchData, rows: np.ndarray, device: str) -> dict:
    """Forget / test / retain-train / validation accuracy (percent), mean losses, and the two
    loss attacks forget vs test: LR cross-validated accuracy and the familiarity AUC."""
    train = open_dataset(bench.data).split("train")
    test = open_dataset(bench.data).split("test")
    validation = open_dataset(bench.validation).split("test")
    model = load_model(model_dir, device)
    retain = np.setdiff1d(np.random.default_rng(123).permutation(len(train))[:RETAIN_EVAL], rows)

    def run(split, r):
        logits = predict_logits(model, split, r, device=device)
        labels = split.labels if r is None else split.labels[torch.as_tensor(r)]
        loss = torch.nn.functional.cross_entropy(logits, labels, reduction="none").numpy()
        return loss, 100 * float((logits.argmax(1) == labels).float().mean())
    f_loss, f_acc = run(train, rows)
    t_loss, t_acc = run(test, None)
    _, r_acc = run(train, retain)
    _, v_acc = run(validation, None)
    return {"forget_acc": f_acc, "forget_loss": float(f_loss.mean()), "test_acc": t_acc,
            "test_loss": float(t_loss.mean()), "retain_train_acc": r_acc,
            "validation_acc": v_acc,
            "loss_lr": 100 * loss_lr_cv_accuracy(f_loss, t_loss, np.random.default_rng(0)),
            "auc": familiarity_auc(f_loss, t_loss),
            "auc_band": auc_band(len(f_loss), len(t_loss))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-size", type=int, default=20_000)
    ap.add_argument("--epochs", type=int, default=Recipe().epochs,
                    help="of the base model and the oracle")
    ap.add_argument("--label-smoothing", type=float, default=Recipe().label_smoothing,
                    help="of the base model and the oracle: 0 lets it memorise wrong labels")
    ap.add_argument("--k", type=int, nargs="+", default=[16, 128, 1024])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--large-k-seeds", type=int, nargs="*", default=[0],
                    help="seeds drawn for k >= 1024 (the union oracle lacks every draw)")
    ap.add_argument("--methods", nargs="+", default=["match", "finetune", "neggrad+"],
                    help="measured on every draw")
    ap.add_argument("--ablations", nargs="*", default=[m for m in METHODS if m.startswith(
                        "l2ul")],
                    help="measured on k=16, seed 0")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out"))
    args = ap.parse_args()
    out = Path(args.out)
    default = (args.epochs, args.label_smoothing) == (Recipe().epochs, Recipe().label_smoothing)
    world = str(args.train_size) + ("" if default else
                                    f"-e{args.epochs}-ls{args.label_smoothing:g}")
    work = out / "instance" / world
    work.mkdir(parents=True, exist_ok=True)
    bench = prepare(out, args.train_size)
    recipe = recipe_for("resnet18", epochs=args.epochs, label_smoothing=args.label_smoothing)
    requests = [(k, s) for k in args.k for s in args.seeds if k < 1024 or
                s in args.large_k_seeds]
    draws = {s: max(k for k, t in requests if t == s) for _, s in requests}
    tag = f"resnet18-instance-{world}"
    base = out / "models" / f"{tag}-base"
    base_metrics = trained(bench.data, "resnet18", base, args.epochs, device=args.device,
                           label_smoothing=args.label_smoothing)
    union = write_ids(work / "union.parquet", union_ids(bench, draws))
    oracle = out / "models" / (f"{tag}-oracle" + "".join(
        f"-s{s}k{k}" for s, k in sorted(draws.items())))
    if not (oracle / "metrics.json").exists():
        isolated(train_to_dir, str(bench.data), "resnet18", str(oracle), recipe, None,
                 str(union), args.device, False)
    oracle_metrics = json.loads((oracle / "metrics.json").read_text())
    # the retrain's cost: the faster of the two trainings of this recipe (one of them may have
    # run beside other work), scaled to the oracle's rows
    retrain_seconds = min(base_metrics["seconds"] * oracle_metrics["train_rows"]
                          / base_metrics["train_rows"], oracle_metrics["seconds"])
    train = open_dataset(bench.data).split("train")
    # the draws every method runs on first, then the mislabelled images, then the ablations
    # on k=16, seed 0 (L2UL costs minutes a run)
    plan = [(k, s, args.methods, True) for k, s in requests]
    plan += [("flipped", 0, list(FLIPPED_METHODS), True)]
    plan += [(16, 0, args.ablations, False)] if (16, 0) in requests else []
    records = []
    for k, seed, names, references in plan:
        rows = (np.sort(train.indices(bench.flipped_ids)) if k == "flipped"
                else forget_rows(bench, seed, k))
        ids_file = write_ids(work / f"k{k}-s{seed}.parquet", train.ids_at(rows))
        roles = [("original", base), ("oracle", oracle)] if references else []
        for name, model_dir in [*roles, *[(n, None) for n in names]]:
            slug = _slug(name)
            cached = work / f"k{k}-s{seed}-{slug}.json"
            if not cached.exists():
                record: dict = {"k": k, "seed": seed, "method": name}
                if model_dir is None:
                    model_dir = work / f"k{k}-s{seed}-{slug}"
                    record |= run_method(name, bench, base, ids_file, model_dir, seed,
                                         args.device)
                cached.write_text(json.dumps(record | measure(model_dir, bench, rows,
                                                              args.device)))
            records.append(json.loads(cached.read_text()))
            print(json.dumps(records[-1]), flush=True)
    result = {"train_size": args.train_size, "device": args.device, "epochs": args.epochs,
              "label_smoothing": args.label_smoothing, "union_draws": draws,
              "retrain_seconds": retrain_seconds,
              "oracle_test_acc": 100 * oracle_metrics["test_acc"],
              "base_test_acc": 100 * base_metrics["test_acc"],
              "records": records}
    name = "instance_forgetting" + ("" if world == "20000" else f"-{world}") + ".json"
    (out / name).write_text(json.dumps(result, indent=1))
    print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
