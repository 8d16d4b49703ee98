"""Instance-forgetting benchmark (issue 6): k random training images of Fashion-MNIST forgotten
by L2UL and its ablations, beside the original model and the retrain oracle.

    python bench/instance_forgetting.py --k 16 64 256 --seeds 0 1 2

One oracle serves every (k, seed): it is retrained without the union of all forget sets (the k
sets of a seed are prefixes of one permutation), so every forget image is unseen by it, and the
few hundred extra images it lacks out of 60,000 do not move its test accuracy measurably.
Writes ``bench/out/instance_forgetting-resnet18.json`` and ``.md``; each run is cached in
``bench/out/instance/``, so an interrupted bench resumes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fashion_mnist, isolated, markdown_table, trained

from oblivio.data import open_dataset
from oblivio.data.sample_ids import write_sample_ids
from oblivio.evaluation.attacks import loss_lr_cv_accuracy
from oblivio.models import load_model
from oblivio.models.inference import predict_logits
from oblivio.training import Recipe, train_to_dir
from oblivio.unlearn.instance_forgetting import L2ULSettings, forget_instances

MAX_K, RETAIN_EVAL = 256, 10_000
METHODS = {"l2ul (adv+imp)": L2ULSettings(), "l2ul, bn eval": L2ULSettings(bn="eval"),
           "adv": L2ULSettings(ablation="adv"),
           "naive": L2ULSettings(ablation="naive")}


def forget_rows(n: int, seed: int, k: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n)[:MAX_K][:k]


def measure(model_dir: Path, data: Path, rows: np.ndarray, seed: int) -> dict:
    """Forget / test / retain-train accuracy and loss-LR MIA (forget vs test), in percent."""
    ds = open_dataset(data)
    train, test = ds.split("train"), ds.split("test")
    model = load_model(model_dir)
    retain = np.setdiff1d(np.random.default_rng(123).permutation(len(train))[:RETAIN_EVAL], rows)

    def losses(split, r):
        logits = predict_logits(model, split, r)
        labels = split.labels if r is None else split.labels[torch.as_tensor(r)]
        loss = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
        return loss.numpy(), float((logits.argmax(1) == labels).float().mean())
    f_loss, f_acc = losses(train, rows)
    t_loss, t_acc = losses(test, None)
    _, r_acc = losses(train, retain)
    mia = loss_lr_cv_accuracy(f_loss, t_loss, np.random.default_rng(seed))
    return {"forget_acc": 100 * f_acc, "test_acc": 100 * t_acc, "retain_train_acc": 100 * r_acc,
            "mia_loss_lr": 100 * mia}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--ablation-seeds", type=int, nargs="+", default=[0],
                    help="seeds on which the ablations (every method but the first) also run")
    ap.add_argument("--epochs", type=int, default=Recipe().epochs)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out"))
    args = ap.parse_args()
    out = Path(args.out)
    work = out / "instance"
    work.mkdir(parents=True, exist_ok=True)
    data = fashion_mnist(out)
    train = open_dataset(data).split("train")
    base = out / "models" / f"resnet18-base-{args.epochs}ep"
    base_metrics = trained(data, "resnet18", base, args.epochs, device=args.device)
    union = np.unique(np.concatenate([forget_rows(len(train), s, MAX_K) for s in (0, 1, 2)]))
    union_file = work / "forget-union.txt"
    union_file.write_text("\n".join(train.ids_at(union)) + "\n")
    oracle = out / "models" / f"resnet18-oracle-instances-{args.epochs}ep"
    if not (oracle / "metrics.json").exists():
        isolated(train_to_dir, str(data), "resnet18", str(oracle), Recipe(epochs=args.epochs),
                 None, str(union_file), args.device, False)
    oracle_seconds = json.loads((oracle / "metrics.json").read_text())["seconds"]
    records = []
    for k in args.k:
        for seed in args.seeds:
            rows = forget_rows(len(train), seed, k)
            if seed not in (0, 1, 2):
                raise SystemExit("the oracle covers seeds 0, 1 and 2")
            ids_file = work / f"k{k}-s{seed}.parquet"
            write_sample_ids(ids_file, train.ids_at(rows))
            for name, model_dir in (("original", base), ("oracle", oracle)):
                records.append({"k": k, "seed": seed, "method": name,
                                **measure(model_dir, data, rows, seed)})
            for name in args.methods:
                if name != args.methods[0] and seed not in args.ablation_seeds:
                    continue
                slug = re.sub(r"[^a-z0-9+]+", "-", name).strip("-")
                cached = work / f"k{k}-s{seed}-{slug}.json"
                if not cached.exists():
                    model_dir = work / f"k{k}-s{seed}-{slug}"
                    prov, seconds, peak = isolated(
                        forget_instances, str(base), str(data), str(ids_file), str(model_dir),
                        replace(METHODS[name], seed=seed), args.device, False)
                    cached.write_text(json.dumps({
                        "k": k, "seed": seed, "method": name, "seconds": seconds,
                        "peak_rss_mb": peak, "steps": prov["steps"], "cap_hit": prov["cap_hit"],
                        "phases": prov["seconds"], **measure(model_dir, data, rows, seed)}))
                records.append(json.loads(cached.read_text()))
                print(json.dumps(records[-1]), flush=True)
    table = summarise(records, base_metrics, oracle_seconds)
    md = [f"# Instance forgetting: resnet18, Fashion-MNIST ({args.device}, mean over seeds "
          f"{', '.join(map(str, args.seeds))})", "",
          f"Original test accuracy {100 * base_metrics['test_acc']:.2f}%; oracle retrain "
          f"{oracle_seconds:.0f} s. MIA: loss-LR CV accuracy forget vs test, 50 = unseen. "
          f"Retain-train accuracy on {RETAIN_EVAL} training images.", "", table]
    (out / "instance_forgetting-resnet18.md").write_text("\n".join(md) + "\n")
    (out / "instance_forgetting-resnet18.json").write_text(json.dumps(
        {"records": records, "oracle_seconds": oracle_seconds}, indent=2))
    print("\n".join(md))


def summarise(records: list[dict], base_metrics: dict, oracle_seconds: float) -> str:
    """Mean (and worst, for forget accuracy and test drop) over seeds per k and method."""
    rows = []
    for k in sorted({r["k"] for r in records}):
        base = {r["seed"]: r["test_acc"] for r in records if r["k"] == k
                and r["method"] == "original"}
        for method in dict.fromkeys(r["method"] for r in records):
            rs = [r for r in records if r["k"] == k and r["method"] == method]
            if not rs:
                continue
            drop = [base[r["seed"]] - r["test_acc"] for r in rs]
            secs = [r.get("seconds", oracle_seconds if method == "oracle" else None) for r in rs]
            rows.append([k, method, float(np.mean([r["forget_acc"] for r in rs])),
                         float(max(r["forget_acc"] for r in rs)), float(np.mean(drop)),
                         float(max(drop)), float(np.mean([r["retain_train_acc"] for r in rs])),
                         float(np.mean([r["mia_loss_lr"] for r in rs])),
                         float(np.mean(secs)) if None not in secs else "-",
                         sum(r.get("cap_hit", False) for r in rs)])
    return markdown_table(["k", "method", "forget acc", "worst", "test drop", "worst drop",
                           "retain-train acc", "MIA loss-LR", "seconds", "cap hit"], rows)


if __name__ == "__main__":
    main()
