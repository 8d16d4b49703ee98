"""Class forgetting against the baselines (issues 6, 25): projection vs SSD, fine-tune, NegGrad+,
random label, SCRUB, SalUn and the retrain oracle, one Fashion-MNIST class at a time.

    python bench/class_baselines.py --classes 0-9
    python bench/class_baselines.py --device cuda --warm   # on a GPU

Every method runs in its own process on the same base model; seconds are the method's own
(load included). ``--warm`` runs them in this process instead, each once untimed first, so a
GPU's one-off set-up (CUDA context, cuDNN autotuning) is not counted. Quality: retain / forget
test accuracy and the issue-4 metrics on the test split and a fixed 12,000-image sample of the
training split. Budgets are stated in the table; each
run is cached in ``bench/out/class_baselines/`` so the bench resumes. Oracles come from the
committed ledger ``bench/oracles.json`` (``bench/oracles.py`` trains them).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    fashion_mnist,
    isolated,
    markdown_table,
    oracle,
    sampled_quality,
    timed,
    trained,
)

from oblivio.training import Recipe
from oblivio.unlearn.baselines.run import forget_with_baseline
from oblivio.unlearn.baselines.salun import SalunSettings
from oblivio.unlearn.baselines.scrub import ScrubSettings
from oblivio.unlearn.classes.forget import ProjectionSettings, forget_by_contrast, forget_classes
from oblivio.unlearn.tuning import BaselineSettings

BUDGETS = {  # what each baseline may spend: epochs over D_r (finetune) or D_f (the others)
    "finetune": BaselineSettings(epochs=0.25, lr=0.01),
    "neggrad+": BaselineSettings(epochs=1.0, lr=0.01),
    "random-label": BaselineSettings(epochs=1.0, lr=0.01),
    "ssd": BaselineSettings(fisher_samples=10_000),
    "scrub": ScrubSettings(),  # the authors' defaults: 3 epochs, each a pass over D_r
    "salun": SalunSettings(epochs=1.0),  # the paper's lr 0.013 and saliency 0.5
}


def run_method(method: str, base: str, data: str, c: int, out: str, device: str = "cpu") -> dict:
    if method in ("projection", "projection-bn0"):  # bn0: without the batch-norm rounds
        settings = ProjectionSettings(bn_rounds=0 if method == "projection-bn0"
                                      else ProjectionSettings.bn_rounds)
        return forget_classes(base, data, [c], out, settings, device, progress=False)
    if method == "contrast":  # the other training-free method, at its defaults
        return forget_by_contrast(base, data, [c], out, device=device, progress=False)
    return forget_with_baseline(base, data, out, method, classes=[c], settings=BUDGETS[method],
                                device=device, progress=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", default="0-9")
    ap.add_argument("--methods", nargs="+",
                    default=["projection", "ssd", "finetune", "neggrad+", "random-label"])
    ap.add_argument("--epochs", type=int, default=Recipe().epochs)
    ap.add_argument("--out", default=str(Path(__file__).parent / "out"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--warm", action="store_true",
                    help="time each method in this process after one untimed run")
    args = ap.parse_args()
    tag = "" if args.device == "cpu" else f"-{args.device}"
    lo, _, hi = args.classes.partition("-")
    classes = list(range(int(lo), int(hi or lo) + 1))
    out = Path(args.out)
    work = out / "class_baselines"
    work.mkdir(parents=True, exist_ok=True)
    data = fashion_mnist(out)
    base = out / "models" / f"resnet18-base-{args.epochs}ep{tag}"
    trained(data, "resnet18", base, args.epochs, device=args.device)
    records = []
    if args.warm:
        for method in args.methods:
            run_method(method, str(base), str(data), classes[0],
                       str(work / f"warm-up-{method}{tag}"), args.device)
    for c in classes:
        runs = [("original", {"seconds": None,
                              **sampled_quality(base, data, c, args.device)})]
        om = oracle(data, out, "resnet18", args.epochs, c)
        if om is not None:
            runs.append(("retrain", {"seconds": om["seconds"], **om["sampled_quality"]}))
        for method in args.methods:
            cached = work / f"{method}{c}{tag}.json"
            if not cached.exists():
                model_dir = work / f"{method}{c}{tag}"
                call = (method, str(base), str(data), c, str(model_dir), args.device)
                result, seconds, _ = (timed(run_method, call) if args.warm
                                      else isolated(run_method, *call))
                cached.write_text(json.dumps({
                    "seconds": seconds, "device": args.device, "warm": args.warm,
                    "provenance_seconds": result.get("seconds"),
                    **sampled_quality(model_dir, data, c, args.device)}))
            runs.append((method, json.loads(cached.read_text())))
        for method, info in runs:
            records.append({"class": c, "method": method, **info})
            print(json.dumps(records[-1]), flush=True)
        md = write_report(out, tag, args, records)  # after each class: a cut-off run keeps them
    print(md)


def with_earlier(path: Path, records: list[dict]) -> list[dict]:
    """This run's records and the earlier result's rows (class, method) it did not run, so a
    run of one more method or class adds to the table instead of replacing it."""
    ran = {(r["class"], r["method"]) for r in records}
    earlier = json.loads(path.read_text()) if path.exists() else []
    order = list(dict.fromkeys(r["method"] for r in earlier + records))
    return sorted([r for r in earlier if (r["class"], r["method"]) not in ran] + records,
                  key=lambda r: (r["class"], order.index(r["method"])))


def write_report(out: Path, tag: str, args: argparse.Namespace, records: list[dict]) -> str:
    where = "CPU, 2 threads" if args.device == "cpu" else args.device
    path = out / f"class_baselines-resnet18{tag}.json"
    records = with_earlier(path, records)
    classes = sorted({r["class"] for r in records})
    md = "\n".join([
        f"# Class forgetting vs baselines: resnet18, Fashion-MNIST ({where}"
        f"{', warm process' if args.warm else ''})", "",
        f"Classes {', '.join(map(str, classes))}; mean (worst) over classes, accuracy in %. "
        "Budgets: finetune 0.25 epoch of D_r; neggrad+, random-label and salun up to 1 epoch of "
        "D_f, stopping at forget accuracy <= 1%; SSD's Fisher of D on 10,000 images; lr 0.01 "
        "(salun 0.013); scrub 3 epochs (max-steps in the first 2), each a pass over D_r, "
        "lr 5e-4.", "",
        summarise(records)])
    (out / f"class_baselines-resnet18{tag}.md").write_text(md + "\n")
    path.write_text(json.dumps(records, indent=2))
    return md


def summarise(records: list[dict]) -> str:
    rows = []
    for method in dict.fromkeys(r["method"] for r in records):
        rs = [r for r in records if r["method"] == method]
        retain = [100 * r["retain_test_acc"] for r in rs]
        forget = [100 * r["forget_test_acc"] for r in rs]
        mia = [100 * r["mia_efficacy_confidence"] for r in rs]
        probe = [100 * r["probe_forget_test_acc"] for r in rs]
        secs = [r["seconds"] for r in rs if r["seconds"] is not None]
        rows.append([method, len(rs), f"{np.mean(retain):.2f} ({min(retain):.2f})",
                     f"{np.mean(forget):.2f} ({max(forget):.2f})",
                     f"{np.mean(mia):.1f} ({min(mia):.1f})", f"{np.mean(probe):.1f}",
                     f"{np.mean(secs):.1f}" if secs else "-"])
    return markdown_table(["method", "classes", "retain test acc", "forget test acc",
                           "MIA-efficacy", "probe forget acc", "seconds"], rows)


if __name__ == "__main__":
    main()
