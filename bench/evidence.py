"""Evidence benchmark (issues 4 and 25): for each forgotten class, the full metric set and the
relearning measurement of the original, the unlearned model and the retrain oracle, plus the
time to evaluate one model.

    python bench/evidence.py --arch resnet18 --classes 0-9 [--method default|projection|contrast]

The unlearned models: those cached by ``bench/class_forgetting.py`` (``<arch>-forget<c>``, or
``<arch>-contrast<c>`` with ``--method contrast``), or with ``--method default`` those of
`oblivio forget --classes C` at its defaults (made here if missing, ``<arch>-default<c>``).
The oracles' metrics come from the committed ledger ``bench/oracles.json``; classes without
an oracle are reported without one. Relearning (``oblivio.evaluation.relearn``, default
settings) is measured here for the original and the unlearned model; an oracle's is the
ledger's, from the oracle of the same recipe or, where that has none, from the longest other
retrain of the class that has it (named in ``oracle_relearn_from``).
Writes ``bench/results/evidence-<arch>[-<method>].json`` and ``bench/out/evidence-...md``.
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
from common import (
    fashion_mnist,
    markdown_table,
    oracle,
    oracle_key,
    outputs_of,
    read_ledger,
    relearned,
)

from oblivio.data import open_dataset
from oblivio.evaluation.evaluate import forget_spec
from oblivio.evaluation.metrics import CLASS_KEYS, compute_metrics
from oblivio.training import Recipe
from oblivio.unlearn.classes.forget import forget_classes

SHOWN = ["retain_test_acc", "forget_test_acc", "mia_efficacy_confidence", "mia_efficacy_entropy",
         "mia_efficacy_m_entropy", "mia_entropy_lr_member_rate", "mia_loss_lr_cv_acc",
         "probe_forget_test_acc", "relearn_steps", "relearn_forget_test_acc"]
GAP_KEYS = ["retain_test_acc", "mia_efficacy_confidence", "mia_efficacy_entropy",
            "mia_efficacy_m_entropy", "mia_entropy_lr_member_rate", "mia_loss_lr_cv_acc",
            "probe_forget_test_acc", "relearn_forget_test_acc"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--classes", default="0-9")
    ap.add_argument("--epochs", type=int, default=Recipe().epochs)
    ap.add_argument("--method", choices=("default", "projection", "contrast"),
                    default="projection",
                    help="which class_forgetting.py models to read, or the CLI's defaults")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out"))
    args = ap.parse_args()
    out = Path(args.out)
    models = out / "models"
    base = models / f"{args.arch}-base-{args.epochs}ep"
    data = fashion_mnist(out)
    dataset = open_dataset(data)
    start = time.perf_counter()
    original = outputs_of(base, data, device=args.device)
    predict_seconds = time.perf_counter() - start
    records = []
    for c in parse_classes(args.classes):
        spec, _ = forget_spec(dataset, str(c), None)
        rec = {"class": c}
        if args.method == "default":
            unlearned = models / f"{args.arch}-default{c}"
            if not (unlearned / "config.json").exists():
                forget_classes(str(base), str(data), [c], str(unlearned), device=args.device,
                               progress=False)
        else:
            unlearned = unlearned_dir(models, args.arch, args.method, c)
        roles = {"original": (base, original),
                 "unlearned": (unlearned, outputs_of(unlearned, data, device=args.device))}
        for role, (model_dir, (train, test)) in roles.items():
            t = time.perf_counter()
            rec[role] = compute_metrics(train, test, spec, dataset.num_classes)
            rec[f"{role}_metric_seconds"] = time.perf_counter() - t
            rec[role] |= relearned(model_dir, data, c, args.device)
        om = oracle(data, out, args.arch, args.epochs, c)
        if om is not None:
            rec["oracle"] = om["evidence"]
        key, relearnt = oracle_relearn(args.arch, c, args.epochs)
        if key is not None:
            rec.setdefault("oracle", {}).update(relearnt)
            rec["oracle_relearn_from"] = key
        records.append(rec)
        print(json.dumps(rec), flush=True)
    write(out, args.arch, args.method, kept_records(args.arch, args.method, records),
          predict_seconds)


def result_path(arch: str, method: str) -> Path:
    name = arch if method == "projection" else f"{arch}-{method}"
    return Path(__file__).parent / "results" / f"evidence-{name}.json"


def kept_records(arch: str, method: str, records: list[dict]) -> list[dict]:
    """This run's records and the earlier result's of the classes it did not run, so one class
    can be measured again without the other nine."""
    path, ran = result_path(arch, method), {r["class"] for r in records}
    earlier = json.loads(path.read_text())["classes"] if path.exists() else []
    return sorted([r for r in earlier if r["class"] not in ran] + records,
                  key=lambda r: r["class"])


def oracle_relearn(arch: str, c: int, epochs: int) -> tuple[str | None, dict]:
    """The ledger's relearning of a retrain without class ``c``: the ``epochs`` oracle's, else
    the longest-trained one's that has it."""
    ledger = read_ledger()
    prefix = oracle_key(arch, c, 0).removesuffix("0ep")
    keys = sorted((k for k, v in ledger.items() if k.startswith(prefix) and "relearn" in v),
                  key=lambda k: (k != oracle_key(arch, c, epochs),
                                 -ledger[k]["recipe"]["epochs"]))
    return (keys[0], ledger[keys[0]]["relearn"]) if keys else (None, {})


def _cell(record: dict, role: str, key: str):
    value = record[role].get(key, "-")
    return ">cap" if value is None else value


def write(out: Path, arch: str, method: str, records: list[dict], predict_seconds: float
          ) -> None:
    def row(label: str, role: str, agg) -> list:
        cells = []
        for k in SHOWN:
            if k == "relearn_steps":  # not back within the cap counts as infinitely many
                values = [math.inf if r[role][k] is None else r[role][k] for r in records
                          if role in r and k in r[role]]
                middle = float(np.median(values)) if values else "-"
                cells.append(">cap" if middle == math.inf else middle)
                continue
            values = [r[role][k] for r in records if role in r and k in r[role]
                      and not math.isnan(r[role][k])]
            cells.append(float(agg(values)) if values else "-")
        return [label, role] + cells

    rows = []
    for r in records:
        for role in ("original", "unlearned", "oracle"):
            if role in r:
                rows.append([r["class"], role] + [_cell(r, role, k) for k in SHOWN])
    for role in ("original", "unlearned", "oracle"):
        rows.append(row("mean", role, np.mean))
    gaps = {k: [abs(r["unlearned"][k] - r["oracle"][k]) for r in records
                if k in r.get("oracle", {})] for k in GAP_KEYS}
    gap_line = ("Unlearned vs oracle, mean absolute gap over the classes with an oracle "
                "(issue 25's goals: attacks 0.10, probe 0.03, retain 0.005): " + ", ".join(
                    f"{k} {np.mean(v):.3f} ({len(v)})" for k, v in gaps.items() if v)
                if any(gaps.values()) else "No oracle cached.")
    metric_seconds = np.mean([r["unlearned_metric_seconds"] for r in records])
    name = arch if method == "projection" else f"{arch}-{method}"
    md = [f"## Evidence of forgetting, {arch} ({method}) on Fashion-MNIST",
          "Accuracies and attack scores as fractions; directions: forget_test_acc and "
          "mia_entropy_lr_member_rate lower = more forgotten, mia_efficacy_* higher = more "
          "forgotten, mia_loss_lr_cv_acc 0.5 = indistinguishable from unseen data, "
          "probe_forget_test_acc lower = forgotten deeper than the head.",
          f"One model's predictions on train + test: {predict_seconds:.1f} s; all metrics from "
          f"them: {metric_seconds:.1f} s.",
          "relearn_steps: fine-tuning steps until half the class's test images are right again "
          "(>cap: not within the cap), its summary row the median; an oracle's relearning comes "
          "from the retrain named in the JSON's oracle_relearn_from.",
          gap_line, "",
          markdown_table(["class", "model"] + SHOWN, rows)]
    out.mkdir(parents=True, exist_ok=True)
    (out / f"evidence-{name}.md").write_text("\n".join(md) + "\n")
    result_path(arch, method).parent.mkdir(exist_ok=True)
    result_path(arch, method).write_text(json.dumps(
        {"arch": arch, "method": method, "predict_seconds": predict_seconds, "classes": records,
         "keys": CLASS_KEYS, "gaps": {k: float(np.mean(v)) for k, v in gaps.items() if v}},
        indent=2))
    print("\n".join(md))


if __name__ == "__main__":
    main()
