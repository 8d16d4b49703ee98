"""Evidence benchmark (issue 4): for each forgotten class, the full metric set of the original,
the unlearned model and the retrain oracle, plus the time to evaluate one model.

    python bench/evidence.py --arch resnet18 --classes 0-9 [--method projection|contrast]

Uses the unlearned models cached by ``bench/class_forgetting.py`` (``<arch>-forget<c>``, or
``<arch>-contrast<c>`` with ``--method contrast``) and the oracles' metrics from the committed
ledger ``bench/oracles.json``; classes without an oracle are reported without one. Writes
``bench/out/evidence-<arch>[-contrast].json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from class_forgetting import parse_classes, unlearned_dir
from common import fashion_mnist, markdown_table, oracle, outputs_of

from oblivio.data import open_dataset
from oblivio.evaluation.evaluate import forget_spec
from oblivio.evaluation.metrics import CLASS_KEYS, compute_metrics
from oblivio.training import Recipe

SHOWN = ["retain_test_acc", "forget_test_acc", "mia_efficacy_confidence", "mia_efficacy_entropy",
         "mia_efficacy_m_entropy", "mia_entropy_lr_member_rate", "mia_loss_lr_cv_acc",
         "probe_forget_test_acc"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--classes", default="0-9")
    ap.add_argument("--epochs", type=int, default=Recipe().epochs)
    ap.add_argument("--method", choices=("projection", "contrast"), default="projection",
                    help="which class_forgetting.py models to read")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out"))
    args = ap.parse_args()
    out = Path(args.out)
    models = out / "models"
    data = fashion_mnist(out)
    dataset = open_dataset(data)
    start = time.perf_counter()
    original = outputs_of(models / f"{args.arch}-base-{args.epochs}ep", data,
                          device=args.device)
    predict_seconds = time.perf_counter() - start
    records = []
    for c in parse_classes(args.classes):
        spec, _ = forget_spec(dataset, str(c), None)
        rec = {"class": c}
        roles = {"original": original,
                 "unlearned": outputs_of(unlearned_dir(models, args.arch, args.method, c), data,
                                         device=args.device)}
        for role, (train, test) in roles.items():
            t = time.perf_counter()
            rec[role] = compute_metrics(train, test, spec, dataset.num_classes)
            rec[f"{role}_metric_seconds"] = time.perf_counter() - t
        om = oracle(data, out, args.arch, args.epochs, c)
        if om is not None:
            rec["oracle"] = om["evidence"]
        records.append(rec)
        print(json.dumps(rec), flush=True)
    write(out, args.arch, args.method, records, predict_seconds)


def write(out: Path, arch: str, method: str, records: list[dict], predict_seconds: float
          ) -> None:
    def row(label: str, role: str, agg) -> list:
        cells = []
        for k in SHOWN:
            values = [r[role][k] for r in records if role in r and not math.isnan(r[role][k])]
            cells.append(float(agg(values)) if values else "-")
        return [label, role] + cells

    rows = []
    for r in records:
        for role in ("original", "unlearned", "oracle"):
            if role in r:
                rows.append([r["class"], role] + [r[role][k] for k in SHOWN])
    for role in ("original", "unlearned", "oracle"):
        rows.append(row("mean", role, np.mean))
    gaps = [abs(r["unlearned"]["mia_efficacy_confidence"] - r["oracle"]["mia_efficacy_confidence"])
            for r in records if "oracle" in r]
    metric_seconds = np.mean([r["unlearned_metric_seconds"] for r in records])
    name = arch if method == "projection" else f"{arch}-{method}"
    md = [f"## Evidence of forgetting, {arch} ({method}) on Fashion-MNIST",
          "Accuracies and attack scores as fractions; directions: forget_test_acc and "
          "mia_entropy_lr_member_rate lower = more forgotten, mia_efficacy_* higher = more "
          "forgotten, mia_loss_lr_cv_acc 0.5 = indistinguishable from unseen data, "
          "probe_forget_test_acc lower = forgotten deeper than the head.",
          f"One model's predictions on train + test: {predict_seconds:.1f} s; all metrics from "
          f"them: {metric_seconds:.1f} s.",
          (f"Unlearned vs oracle MIA-efficacy (confidence), mean absolute gap: "
           f"{100 * np.mean(gaps):.2f} points over {len(gaps)} class(es) with an oracle."
           if gaps else "No oracle cached."), "",
          markdown_table(["class", "model"] + SHOWN, rows)]
    out.mkdir(parents=True, exist_ok=True)
    (out / f"evidence-{name}.md").write_text("\n".join(md) + "\n")
    (out / f"evidence-{name}.json").write_text(json.dumps(
        {"arch": arch, "method": method, "predict_seconds": predict_seconds, "classes": records,
         "keys": CLASS_KEYS}, indent=2))
    print("\n".join(md))


if __name__ == "__main__":
    main()
