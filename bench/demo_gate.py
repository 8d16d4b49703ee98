"""The deletion gate in make demo's world, beside the retrain oracle: for each seed, the one-epoch
original, a retrain of it without 32 random training images (same recipe and seed), and match
on the original. How far a retrain moves test accuracy says how wide the test-accuracy gate must
be for a retrain, the result unlearning imitates, to pass it; the untouched original is the
control the loss-attack gate should fail, the retrain the one it must pass.

    python bench/demo_gate.py --seeds 0-4 --result bench/results/demo_gate.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from class_forgetting import parse_classes
from common import fashion_mnist, isolated, trained

from oblivio.data import open_dataset
from oblivio.data.sample_ids import write_sample_ids
from oblivio.evaluation.evaluate import evaluate
from oblivio.evaluation.gates import Gates, check_gates
from oblivio.unlearn.instances.matching import MatchSettings, forget_by_matching

ROLES = ("original", "oracle", "model")  # the untouched original, the retrain, match


def one_seed(data: Path, out: Path, seed: int, images: int, epochs: int) -> dict:
    train = open_dataset(data).split("train").sample_ids.to_numpy(zero_copy_only=False)
    ids = sorted(np.random.default_rng([seed, 0]).choice(train, images, replace=False).tolist())
    ids_file = out / f"ids-{seed}.parquet"
    write_sample_ids(ids_file, ids)
    original = out / "models" / f"demo-original-{epochs}ep-s{seed}"
    retrain = out / "models" / f"demo-retrain-{epochs}ep-s{seed}-k{images}"
    trained(data, "resnet18", original, epochs, seed=seed)
    trained(data, "resnet18", retrain, epochs, exclude_ids=str(ids_file), seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        matched, match_seconds, _ = isolated(forget_by_matching, str(original), str(data),
                                             str(ids_file), f"{tmp}/match", MatchSettings(),
                                             "cpu", False)
        report = evaluate(f"{tmp}/match", str(data), f"{tmp}/report", forget_ids=str(ids_file),
                          original=str(original), oracle=str(retrain), device="cpu",
                          progress=False)
    metrics = {role: report["models"][role]["metrics"] for role in ROLES}
    before = metrics["original"]["retain_test_acc"]
    gates = Gates()
    verdicts = {role: check_gates({**metrics[role], "original_retain_test_acc": before}, gates)
                for role in ROLES}
    return {"seed": seed, "images": images, "epochs": epochs,
            "test_acc": {role: metrics[role]["retain_test_acc"] for role in ROLES},
            "drop": {role: before - metrics[role]["retain_test_acc"] for role in ROLES},
            "auc": {role: metrics[role]["mia_loss_auc"] for role in ROLES},
            "auc_sd": metrics["model"]["mia_loss_auc_sd"],
            "failures_at_default_gates": verdicts,
            "match_steps": matched["steps"], "match_seconds": match_seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0-4")
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    ap.add_argument("--result", type=Path, default=Path("bench/results/demo_gate.json"))
    args = ap.parse_args()
    data = fashion_mnist(args.out)
    rows = []
    for seed in parse_classes(args.seeds):
        rows.append(one_seed(data, args.out, seed, args.images, args.epochs))
        print(json.dumps(rows[-1]), flush=True)
        args.result.write_text(json.dumps({"seeds": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
