"""The class-forgetting speed bar (issue 25): `oblivio forget --classes C` with the default
method against `oblivio forget --method neggrad+ --classes C`, end to end as a user runs them
(a fresh CLI process each: start-up, loading, the method, writing the model), on the same base
model, in one run, class by class, the two commands alternating which goes first.

    python bench/class_speed.py --classes 0-9 [--repeats 2] [--known-pair]

``--known-pair`` also times the projection given the pair the default chose (``--alpha-r R
--alpha-f F``: no validation search), the floor any faster search could reach.

Quality is the test split's: forget-class accuracy and the retain classes' accuracy drop
against the base model. Writes bench/results/class_speed.json (the base model is the class
baselines' 8-epoch resnet18, trained once and cached under bench/out/models/).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fashion_mnist, per_class_accuracy, split_accuracy, trained

from oblivio.training import Recipe

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {"default": [], "neggrad+": ["--method", "neggrad+"]}


def run_cli(base: Path, data: Path, c: int, out: Path, extra: list[str]) -> float:
    """Seconds of one `oblivio forget` process, from its start to its exit."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [str(Path(sys.executable).parent / "oblivio"), "forget", "--model", str(base),
           "--data", str(data), "--out", str(out), "--classes", str(c), *extra]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=os.environ | {"TQDM_DISABLE": "1"})
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", default="0-9")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=Recipe().epochs)
    ap.add_argument("--known-pair", action="store_true",
                    help="also time the projection at the pair the default chose")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out"))
    ap.add_argument("--result", default=str(ROOT / "bench" / "results" / "class_speed.json"))
    args = ap.parse_args()
    lo, _, hi = args.classes.partition("-")
    classes = list(range(int(lo), int(hi or lo) + 1))
    out = Path(args.out)
    data = fashion_mnist(out)
    base = out / "models" / f"resnet18-base-{args.epochs}ep"
    trained(data, "resnet18", base, args.epochs)
    base_acc = per_class_accuracy(base, data)
    records = []
    for c in classes:
        r0, f0 = split_accuracy(base_acc, [c])
        commands = dict(COMMANDS)
        seconds: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for rep in range(args.repeats):
            order = list(COMMANDS) if (c + rep) % 2 == 0 else list(COMMANDS)[::-1]
            for name in order:
                seconds[name].append(run_cli(base, data, c, out / "class_speed" / name,
                                             COMMANDS[name]))
        if args.known_pair:
            chosen = json.loads((out / "class_speed" / "default" / "config.json").read_text())
            alpha = chosen["provenance"]["alpha"]
            commands["known pair"] = ["--alpha-r", str(alpha["retain"]),
                                      "--alpha-f", str(alpha["forget"])]
            seconds["known pair"] = [run_cli(base, data, c, out / "class_speed" / "known pair",
                                             commands["known pair"])
                                     for _ in range(args.repeats)]
        row = {"class": c, "original_retain": r0, "original_forget": f0}
        for name in commands:
            model_dir = out / "class_speed" / name
            r, f = split_accuracy(per_class_accuracy(model_dir, data), [c])
            config = json.loads((model_dir / "config.json").read_text())
            row[name] = {"seconds": seconds[name],
                         "median_seconds": float(np.median(seconds[name])),
                         "retain": r, "forget": f, "retain_drop": r0 - r,
                         "method": config["provenance"].get("method"),
                         "stages": config["provenance"].get("seconds")}
        row["ratio"] = row["default"]["median_seconds"] / row["neggrad+"]["median_seconds"]
        if args.known_pair:
            row["known_pair_ratio"] = (row["known pair"]["median_seconds"]
                                       / row["neggrad+"]["median_seconds"])
        records.append(row)
        print(json.dumps({"class": c, "ratio": round(row["ratio"], 3),
                          **{n: {k: round(v, 2) for k, v in row[n].items()
                                 if k in ("median_seconds", "retain_drop", "forget")}
                             for n in commands}}), flush=True)
    drops = [r["default"]["retain_drop"] for r in records]
    summary = {"classes": classes, "repeats": args.repeats,
               "ratio_mean": float(np.mean([r["ratio"] for r in records])),
               "ratio_worst": max(r["ratio"] for r in records),
               "default_forget_worst": max(r["default"]["forget"] for r in records),
               "default_retain_drop_mean": float(np.mean(drops)),
               "default_retain_drop_worst": max(drops),
               "machine": f"{os.cpu_count()} cores"}
    if args.known_pair:
        known = [r["known_pair_ratio"] for r in records]
        summary |= {"known_pair_ratio_mean": float(np.mean(known)),
                    "known_pair_ratio_worst": max(known)}
    Path(args.result).write_text(json.dumps({"summary": summary, "records": records},
                                            indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
