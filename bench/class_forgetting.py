"""Class-forgetting benchmark (issue 3): every class of Fashion-MNIST forgotten in turn,
original / unlearned / retrain oracle, plus the speed comparisons measured in the same run.

    python bench/class_forgetting.py --arch resnet18 --classes 0-9 --oracle

    python bench/class_forgetting.py --arch test_vit --epochs 4 --method contrast \
        --reference-classes ''

Writes ``bench/out/class_forgetting-<arch>[-contrast].json`` and ``.md``. Base models are
cached under ``bench/out/models``; oracles are read from the committed ledger
``bench/oracles.json``, and ``--oracle`` trains the missing ones and adds them to it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    fashion_mnist,
    isolated,
    markdown_table,
    oracle,
    per_class_accuracy,
    split_accuracy,
    trained,
)
from reference_projection import reference_forget

from oblivio.data import open_dataset
from oblivio.models import load_model, save_model
from oblivio.training import Recipe
from oblivio.unlearn.classes.forget import (
    ContrastSettings,
    ProjectionSettings,
    forget_by_contrast,
    forget_classes,
)
from oblivio.unlearn.classes.layers import input_columns, projectable_layers
from oblivio.unlearn.classes.samples import draw_class_samples

RETAIN_PER_CLASS, FORGET_SAMPLES, VAL_PER_CLASS, SEED = 100, 1000, 50, 0


def unlearned_dir(models: Path, arch: str, method: str, c: int) -> Path:
    """Where this bench caches the model of ``method`` forgetting class ``c``."""
    return models / f"{arch}-{'contrast' if method == 'contrast' else 'forget'}{c}"


def _samples(data: Path, c: int):
    ds = open_dataset(data)
    train = ds.split("train")
    return train, draw_class_samples(train.labels, ds.num_classes, [c], RETAIN_PER_CLASS,
                                     FORGET_SAMPLES, VAL_PER_CLASS, SEED)


def run_reference(model_dir: str, data: str, c: int, alpha: tuple[float, float], out: str,
                  device: str = "cpu") -> None:
    model = load_model(model_dir)
    train, sets = _samples(Path(data), c)
    reference_forget(model, train, sets.retain, sets.forget, *alpha, device=device)
    cfg = model.config
    save_model(model.cpu(), out, arch=cfg["arch"], class_names=cfg["class_names"],
               img_size=cfg["img_size"], parent_fingerprint=cfg["weights_sha256"])


@torch.inference_mode()
def linear_algebra_floor(model_dir: str, data: str, c: int, device: str = "cpu") -> dict:
    """Forward passes over both sample sets + sum over layers and sets of
    2 min(d,n)^2 max(d,n) FLOP at the device's measured float32 GEMM rate."""
    model = load_model(model_dir, device)
    train, sets = _samples(Path(data), c)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    model(train.batch(sets.retain[:250])[0].to(device))  # warm-up: kernels, allocator
    sync()
    start = time.perf_counter()
    for rows in (sets.retain, sets.forget):
        for x, _ in train.batches(rows, 250):
            model(x.to(device))
    sync()
    forward = time.perf_counter() - start
    specs, _ = projectable_layers(model)
    modules = dict(model.named_modules())
    per_sample: dict[str, int] = {}
    handles = [modules[s.name].register_forward_pre_hook(
        lambda m, a, name=s.name: per_sample.__setitem__(name, input_columns(m, a[0]).shape[1]))
        for s in specs]
    model(train.batch(sets.retain[:1])[0].to(device))
    for h in handles:
        h.remove()
    flop = 0.0
    for s in specs:
        for count in (len(sets.retain), len(sets.forget)):
            n = per_sample[s.name] * count
            flop += 2 * s.groups * min(s.fan_in, n) ** 2 * max(s.fan_in, n)
    a = torch.randn(2048, 2048, device=device)
    a @ a
    sync()
    t = time.perf_counter()
    for _ in range(5):
        a @ a
    sync()
    rate = 5 * 2 * 2048**3 / (time.perf_counter() - t)
    return {"forward_seconds": forward, "flop": flop, "gemm_flop_per_s": rate,
            "floor_seconds": forward + flop / rate}


def parse_classes(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(v) for v in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--classes", default="0-9")
    ap.add_argument("--epochs", type=int, default=Recipe().epochs)
    ap.add_argument("--oracle", action="store_true",
                    help="train the missing retrain oracles (cached ones are always reported)")
    ap.add_argument("--reference-classes", default="0",
                    help="classes on which to run the speed comparisons ('' for none)")
    ap.add_argument("--skip-reference", action="store_true",
                    help="speed comparisons without the (slow) reference baseline")
    ap.add_argument("--method", choices=("projection", "contrast"), default="projection",
                    help="the class-forgetting method (speed comparisons: projection only)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out"))
    args = ap.parse_args()
    out = Path(args.out)
    models = out / "models"
    data = fashion_mnist(out)
    base = models / f"{args.arch}-base-{args.epochs}ep"
    base_metrics = trained(data, args.arch, base, args.epochs, device=args.device)
    original = per_class_accuracy(base, data, args.device)
    records = []
    for c in parse_classes(args.classes):
        contrast = args.method == "contrast"
        target = unlearned_dir(models, args.arch, args.method, c)
        sampling = {"retain_per_class": RETAIN_PER_CLASS, "forget_samples": FORGET_SAMPLES,
                    "val_per_class": VAL_PER_CLASS, "seed": SEED}
        prov, seconds, peak = isolated(
            forget_by_contrast if contrast else forget_classes, str(base), str(data), str(c),
            str(target), (ContrastSettings if contrast else ProjectionSettings)(**sampling),
            args.device, 250, False)
        rec = {"class": c, "method": args.method,
               **({"ratio": prov["ratio"], "rounds": prov["rounds"],
                   "blocks": f"{prov['blocks']}/{prov['blocks_total']}"} if contrast
                  else {"alpha": prov["alpha"]}),
               "stage_seconds": prov["seconds"],
               "unlearn_seconds": prov["seconds"]["total"], "peak_rss_mb": peak,
               "peak_cuda_mb": prov.get("peak_cuda_mb")}
        rec["original_retain"], rec["original_forget"] = split_accuracy(original, [c])
        acc = per_class_accuracy(target, data, args.device)
        rec["unlearned_retain"], rec["unlearned_forget"] = split_accuracy(acc, [c])
        om = oracle(data, out, args.arch, args.epochs, c, args.oracle, args.device)
        if om is not None:
            rec["oracle_retain"], rec["oracle_forget"] = split_accuracy(
                torch.tensor(om["per_class_test_acc"]), [c])
            rec["retrain_seconds"] = om["seconds"]
        rec["retrain_seconds_base"] = base_metrics["seconds"]
        records.append(rec)
        print(json.dumps(rec), flush=True)

    speed = []
    compare = args.reference_classes and args.method == "projection"
    for c in parse_classes(args.reference_classes) if compare else []:
        alpha = next(r["alpha"] for r in records if r["class"] == c)
        pair = (alpha["retain"], alpha["forget"])
        ref_dir = models / f"{args.arch}-reference{c}"
        ref_seconds = ref_peak = ref_acc = None
        if not args.skip_reference:
            _, ref_seconds, ref_peak = isolated(run_reference, str(base), str(data), c, pair,
                                                str(ref_dir), args.device)
            ref_acc = split_accuracy(per_class_accuracy(ref_dir, data), [c])
        fixed, fixed_seconds, fixed_peak = isolated(
            forget_classes, str(base), str(data), str(c), str(models / f"{args.arch}-fixed{c}"),
            ProjectionSettings(alpha_r=pair[0], alpha_f=pair[1], retain_per_class=RETAIN_PER_CLASS,
                               forget_samples=FORGET_SAMPLES, val_per_class=VAL_PER_CLASS,
                               seed=SEED), args.device, 250, False)
        floor = isolated(linear_algebra_floor, str(base), str(data), c, args.device)[0]
        fixed_acc = split_accuracy(per_class_accuracy(models / f"{args.arch}-fixed{c}", data),
                                   [c])
        auto = next(r for r in records if r["class"] == c)
        speed.append({
            "class": c, "alpha": pair,
            "reference_seconds": ref_seconds, "reference_peak_rss_mb": ref_peak,
            "reference_retain": ref_acc and ref_acc[0], "reference_forget": ref_acc and ref_acc[1],
            "oblivio_single_alpha_seconds": fixed["seconds"]["total"],
            "oblivio_single_alpha_peak_rss_mb": fixed_peak,
            "oblivio_single_alpha_stage_seconds": fixed["seconds"],
            "oblivio_retain": fixed_acc[0], "oblivio_forget": fixed_acc[1],
            "speedup_vs_reference": ref_seconds and ref_seconds / fixed["seconds"]["total"],
            "grid_over_single_alpha": auto["unlearn_seconds"] / fixed["seconds"]["total"],
            "single_alpha_over_floor": fixed["seconds"]["total"] / floor["floor_seconds"],
            "floor": floor,
        })
        print(json.dumps(speed[-1]), flush=True)
    write_report(out, args.arch, base_metrics, records, speed, args.method)


def write_report(out: Path, arch: str, base_metrics: dict, records: list[dict],
                 speed: list[dict], method: str = "projection") -> None:
    setting = "alpha (r/f)" if method == "projection" else "ratio x rounds, blocks"
    has_oracle = any("oracle_retain" in r for r in records)
    headers = ["class", "orig retain", "orig forget", "unl retain", "unl forget"]
    headers += ["oracle retain", "oracle forget"] if has_oracle else []
    headers += [setting, "unlearn s", "retrain s", "unlearn/retrain"]
    rows = []
    for r in records:
        retrain = r["retrain_seconds_base"]  # oracles may train on a shared machine
        row = [r["class"], r["original_retain"], r["original_forget"], r["unlearned_retain"],
               r["unlearned_forget"]]
        row += [r.get("oracle_retain", "-"), r.get("oracle_forget", "-")] if has_oracle else []
        row += [f"{r['alpha']['retain']:g}/{r['alpha']['forget']:g}" if "alpha" in r
                else f"{r['ratio']:g} x{r['rounds']}, {r['blocks']}", r["unlearn_seconds"],
                retrain, f"{100 * r['unlearn_seconds'] / retrain:.1f}%"]
        rows.append(row)
    numeric = [i for i, h in enumerate(headers) if h not in ("class", setting,
                                                               "unlearn/retrain")]
    for label, agg in (("mean", np.mean), ("worst", None)):
        row = [label]
        for i in range(1, len(headers)):
            if i not in numeric:
                row.append("")
                continue
            values = [r[i] for r in rows[: len(records)] if isinstance(r[i], float)]
            worst_is_max = "forget" in headers[i] or headers[i].endswith(" s")
            row.append(float(agg(values)) if agg else float(max(values) if worst_is_max
                                                                else min(values)))
        rows.append(row)
    drops = [r["original_retain"] - r["unlearned_retain"] for r in records]
    md = [f"## Class forgetting, {arch} on Fashion-MNIST, {method}",
          f"Base model: {base_metrics['recipe']['epochs']} epochs, "
          f"{base_metrics['seconds']:.0f} s, test accuracy {100 * base_metrics['test_acc']:.2f}%. "
          f"Accuracies in % on the test split; retain drop vs original: mean "
          f"{np.mean(drops):.2f}, worst {max(drops):.2f} points.", "",
          markdown_table(headers, rows)]
    if speed:
        md += ["", "### Speed, same inputs, same alpha, same run", "",
               markdown_table(
                   ["class", "reference s", "oblivio s", "speed-up", "ref retain/forget",
                    "oblivio retain/forget", "grid / single alpha", "single / floor",
                    "ref peak MiB", "oblivio peak MiB"],
                   [[s["class"], s["reference_seconds"] or "-", s["oblivio_single_alpha_seconds"],
                     f"{s['speedup_vs_reference']:.1f}x" if s["reference_seconds"] else "-",
                     f"{s['reference_retain']:.2f} / {s['reference_forget']:.2f}"
                     if s["reference_seconds"] else "-",
                     f"{s['oblivio_retain']:.2f} / {s['oblivio_forget']:.2f}",
                     f"{s['grid_over_single_alpha']:.2f}x", f"{s['single_alpha_over_floor']:.2f}x",
                     f"{s['reference_peak_rss_mb']:.0f}" if s["reference_seconds"] else "-",
                     f"{s['oblivio_single_alpha_peak_rss_mb']:.0f}"]
                    for s in speed]),
               "", "Stage split of the single-alpha run (s): " + "; ".join(
                   f"class {s['class']}: " + ", ".join(
                       f"{k} {v:.2f}" for k, v in s["oblivio_single_alpha_stage_seconds"].items())
                   for s in speed)]
    out.mkdir(parents=True, exist_ok=True)
    name = f"class_forgetting-{arch}" + ("" if method == "projection" else f"-{method}")
    (out / f"{name}.md").write_text("\n".join(md) + "\n")
    (out / f"{name}.json").write_text(json.dumps(
        {"arch": arch, "method": method, "base": base_metrics, "classes": records,
         "speed": speed}, indent=2))
    print("\n".join(md))


if __name__ == "__main__":
    main()
