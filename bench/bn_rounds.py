"""Batch-norm rounds (issue 25): does a projected class come back when batch norm is
re-estimated on kept data, and what do the rounds cost and give?

    python bench/bn_rounds.py --classes 0-9
    python bench/bn_rounds.py --methods neggrad+ salun --result bench/results/F.json

For each class, the default projection with ``bn_rounds`` 0 and 1 (``rounds0``, ``rounds1``),
at its defaults (``default``: the rounds' cap and stop, with the rounds run and the validation
forget accuracy after each) or the other methods named (contrast at its defaults, the baselines at
``bench/class_baselines.py``'s budgets), each in its own process on
the 8-epoch resnet18 base: seconds (the call, loading included), retain and forget test
accuracy, then the same after the attack, batch norm's running statistics re-estimated on
5,120 random kept training images (40 batches of 128, the forgotten class left out), beside
the original's and the retrain's (the ledger's per-class test accuracy). Writes
``bench/results/bn_rounds.json`` (or ``--result``), keeping the records of the classes and
methods this run did not measure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from class_baselines import BUDGETS, run_method
from class_forgetting import parse_classes
from common import fashion_mnist, isolated, known_oracle, per_class_accuracy, split_accuracy

from oblivio.data import open_dataset
from oblivio.evaluation.reestimate import ReestimateSettings, reestimated_accuracy
from oblivio.models import load_model
from oblivio.models.inference import predict_logits
from oblivio.training import Recipe
from oblivio.unlearn.classes.forget import ProjectionSettings, forget_classes

ATTACK = ReestimateSettings()  # what `oblivio evaluate` runs
# exactly this many batch-norm rounds; "default": the cap, stopping on the validation rows
ROUNDS = {"rounds0": 0, "rounds1": 1, "default": ProjectionSettings.bn_rounds}


def accuracies(model: torch.nn.Module, data: Path, c: int) -> dict:
    """Retain and forget test accuracy in %."""
    test = open_dataset(data).split("test")
    ok = (predict_logits(model, test).argmax(1) == test.labels).numpy()
    forget = test.labels.numpy() == c
    return {"retain": 100 * float(ok[~forget].mean()), "forget": 100 * float(ok[forget].mean())}


def attacked(model_dir: Path, data: Path, c: int) -> dict:
    """The accuracies after re-estimating batch norm on kept training images, as `oblivio
    evaluate` measures them."""
    ds = open_dataset(data)
    train, test = ds.split("train"), ds.split("test")
    found = reestimated_accuracy(load_model(model_dir), train, test,
                                 train.labels.numpy() == c, test.labels.numpy() == c,
                                 ATTACK)
    return {"retain": 100 * found["reestimated_retain_test_acc"],
            "forget": 100 * found["reestimated_forget_test_acc"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", default="0-9")
    ap.add_argument("--methods", nargs="+", choices=[*ROUNDS, "contrast", *BUDGETS],
                    default=["rounds0", "rounds1"],
                    help="rounds0/rounds1: the projection's bn_rounds; default: its defaults")
    ap.add_argument("--result", default=str(Path(__file__).parent / "results" / "bn_rounds.json"))
    ap.add_argument("--epochs", type=int, default=Recipe().epochs)
    ap.add_argument("--out", default=str(Path(__file__).parent / "out"))
    args = ap.parse_args()
    out = Path(args.out)
    data = fashion_mnist(out)
    base = out / "models" / f"resnet18-base-{args.epochs}ep"
    records = []
    for c in parse_classes(args.classes):
        retain, forget = split_accuracy(per_class_accuracy(base, data), [c])
        record = {"class": c, "original": {"retain": retain, "forget": forget,
                                           "after_attack": attacked(base, data, c)}}
        entry = known_oracle("resnet18", c, args.epochs)
        if entry is not None:
            r, f = split_accuracy(torch.tensor(entry["per_class_test_acc"]), [c])
            record["retrain"] = {"retain": r, "forget": f}
        for method in args.methods:
            model_dir = out / "bn_rounds" / f"class{c}-{method}"
            shutil.rmtree(model_dir, ignore_errors=True)
            prov, seconds, _ = (
                isolated(forget_classes, str(base), str(data), [c], str(model_dir),
                         ProjectionSettings(bn_rounds=ROUNDS[method]), "cpu", 250, False)
                if method in ROUNDS else isolated(run_method, method, str(base), str(data), c,
                                                  str(model_dir)))
            quality = accuracies(load_model(model_dir), data, c)
            record[method] = {
                "seconds": seconds, "stages": prov.get("seconds"), "alpha": prov.get("alpha"),
                "bn_rounds": prov.get("bn_rounds"),
                "bn_rounds_validation_forget": prov.get("bn_rounds_validation_forget"),
                **quality, "after_attack": attacked(model_dir, data, c)}
        records.append(record)
        print(json.dumps(record), flush=True)
    attack = {"batches": ATTACK.batches, "batch": ATTACK.batch_size}
    Path(args.result).write_text(json.dumps(
        {"attack": attack, "records": merged(Path(args.result), records)}, indent=2))


def merged(path: Path, records: list[dict]) -> list[dict]:
    """The earlier result's records with this run's methods written over them, class by
    class, so one class or method can be measured again without the rest."""
    earlier = {r["class"]: r for r in json.loads(path.read_text())["records"]} \
        if path.exists() else {}
    for r in records:
        earlier[r["class"]] = earlier.get(r["class"], {}) | r
    return [earlier[c] for c in sorted(earlier)]


if __name__ == "__main__":
    main()
