"""make demo as a new user runs it: each seed on a fresh home (the original trained, a class and
32 images honoured by one batch), optionally a second make demo on the first seed's home (the
lineage extended), and the first seed again on a fresh home (the same result twice). Records
each run's exit status, wall time, and every version's gate metrics from its home's MLflow.

    python bench/demo_runs.py --seeds 1-5 --again --result bench/results/demo_runs.json
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from class_forgetting import parse_classes

ROOT = Path(__file__).resolve().parents[1]
READ_VERSIONS = """
import json
from oblivio.tracking.registry import TAG, client, versions
from oblivio.tracking.store import connect
connect()
rows = []
for v in versions("fashion-classifier"):
    run = client().get_run(v.run_id) if v.run_id else None
    rows.append({"version": str(v.version), "tags": v.tags,
                 "metrics": run.data.metrics if run else {},
                 "aliases": list(v.aliases)})
print(json.dumps(rows))
"""
TAGS = ("oblivio.method", "oblivio.parent_version", "oblivio.forget_classes",
        "oblivio.forget_ids_sha256", "oblivio.gate")
KEYS = ("test_acc", "retain_test_acc", "original_retain_test_acc", "forget_test_acc",
        "reestimated_forget_test_acc", "mia_loss_auc", "mia_loss_auc_sd")


def run(home: Path, seed: int, tag: str) -> dict:
    start = time.perf_counter()
    done = subprocess.run(["make", "-s", "demo", f"OBLIVIO_HOME={home}", f"DEMO_SEED={seed}"],
                          cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    (home / f"{tag}.log").write_text(done.stdout + done.stderr)
    rows = json.loads(subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-c", READ_VERSIONS],
        env={**os.environ, "OBLIVIO_HOME": str(home)}, capture_output=True, text=True,
        check=True).stdout)
    versions = [{"version": r["version"], "aliases": r["aliases"],
                 **{k.removeprefix("oblivio."): r["tags"].get(k) for k in TAGS},
                 "steps": json.loads(r["tags"].get("oblivio.params", "{}")).get("steps"),
                 **{k: r["metrics"].get(k) for k in KEYS}} for r in rows]
    summary = [line for line in done.stdout.splitlines() if line.startswith("demo: ")]
    return {"run": tag, "seed": seed, "rc": done.returncode, "seconds": seconds,
            "summary": summary, "error": done.stderr.strip().splitlines()[-1:]
            if done.returncode else [], "versions": versions}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="1-5")
    ap.add_argument("--again", action="store_true",
                    help="a second run on the first seed's home, then that seed on a new one")
    ap.add_argument("--out", type=Path, default=Path("bench/out/demo-runs"))
    ap.add_argument("--result", type=Path, default=Path("bench/results/demo_runs.json"))
    args = ap.parse_args()
    seeds = parse_classes(args.seeds)
    plan = [(args.out / f"home-{s}", s, f"fresh-{s}", True) for s in seeds]
    if args.again:
        plan += [(args.out / f"home-{seeds[0]}", seeds[0], f"second-{seeds[0]}", False),
                 (args.out / f"home-{seeds[0]}-again", seeds[0], f"fresh-{seeds[0]}-again",
                  True)]
    runs = []
    for home, seed, tag, fresh in plan:
        if fresh:
            shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True, exist_ok=True)
        runs.append(run(home.resolve(), seed, tag))
        print(json.dumps({k: runs[-1][k] for k in ("run", "rc", "seconds", "summary")}),
              flush=True)
        args.result.write_text(json.dumps({"machine": os.uname().nodename, "runs": runs},
                                          indent=1) + "\n")


if __name__ == "__main__":
    main()
