"""The pool world (issue 41): per-example evidence for deletion requests against a pool of
retrains, with its controls, and the instance methods judged by it.

    python bench/pool.py --train-size 2000 --epochs 20 --k 3 --held 2

The world: resnet18 on a Fashion-MNIST subset (bench/instance_data.py, 64 of its images
mislabelled) with no label smoothing, so it memorises. Two requests:
- ``mixed``: 16 random correctly labelled images and the 16 most memorised ones, found by a
  pilot pair (two models on complementary halves: each image's phi in the half that trained on
  it minus the other's);
- ``mislabelled``: 16 of the mislabelled images.

Each request gets a pool (evaluation/pool.py): k retrains, k models trained with it (shared by
both requests: the same full training set and seeds) and ``held`` retrains, the control that
must pass. The training set also gets ``--shadows`` shadow models (evaluation/shadows.py, each
on a random half), trained once for every request: every model is scored against them too, so
the pool (the truth, per request) measures whether the shadows' cheaper verdict agrees, and
``match`` with the shadows' per-image targets is one of the methods. The other control, the
untouched original (each "with" model), must fail. Each method unlearns every "with" model,
which is then scored against the pool without the model it came from. Cost is the method's
seconds against the mean retrain's, on this machine, in process. Writes
``bench/results/pool-<size>-e<epochs>-k<k>.json``; members are cached in ``bench/out/pool/`` so
a run resumes. With ``--budget S`` every method gets the same wall-clock budget instead
(``max_seconds``, its own cap raised tenfold so that the budget ends it unless its own
stopping rule does first), written to ``...-budget<S>.json``."""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import isolated
from instance_data import prepare, write_ids

from oblivio.data import open_dataset
from oblivio.data.sample_ids import write_sample_ids
from oblivio.evaluation.pool import Pool, build_pool, member_dir, outputs, pool_gate
from oblivio.evaluation.shadows import Shadows, build_shadows, shadow_gate
from oblivio.models import load_model
from oblivio.models.inference import accuracy
from oblivio.training import recipe_for, train_to_dir
from oblivio.unlearn.baselines.amun import AmunSettings, forget_by_amun
from oblivio.unlearn.baselines.run import forget_with_baseline
from oblivio.unlearn.baselines.salun import SalunSettings
from oblivio.unlearn.baselines.scrub import ScrubSettings
from oblivio.unlearn.instances.l2ul import L2ULSettings, forget_instances
from oblivio.unlearn.instances.matching import MatchSettings, forget_by_matching
from oblivio.unlearn.instances.relabel import RelabelSettings
from oblivio.unlearn.tuning import BaselineSettings

ROOT = Path(__file__).resolve().parent
PART = 16
METHODS = {
    "match": MatchSettings(),
    "match, neighbour targets": MatchSettings(targets="neighbours"),
    "match, shadow targets": MatchSettings(targets="shadows", shadows="<set in main>"),
    # the stop before 2026-12-08: the mean distance alone, not also the shadow gate
    "match, shadow targets, mean rule": MatchSettings(targets="shadows",
                                                      shadows="<set in main>"),
    "relabel": RelabelSettings(),
    "l2ul": L2ULSettings(),
    "neggrad+, guarded": BaselineSettings(epochs=100, retain_guard=0.1),
    "scrub": ScrubSettings(),
    "scrub, rewind": ScrubSettings(rewind=True),
    "salun": SalunSettings(),
    "amun": AmunSettings(),
}


#: Each setting's own cap (steps or epochs): with --budget it is raised tenfold, so that the
#: budget, not the cap, ends a method that has no stopping rule of its own.
CAPS = {MatchSettings: "max_steps", L2ULSettings: "max_epochs"}


def budgeted(settings, seconds: float | None):
    """``settings`` with a wall-clock budget of ``seconds`` and ten times its own cap."""
    if seconds is None:
        return settings
    cap = CAPS.get(type(settings), "epochs")
    return replace(settings, max_seconds=seconds, **{cap: getattr(settings, cap) * 10})


def unlearn(method: str, model: Path, data: Path, reference: Path, ids: Path,
            out: Path, shadows: Path, budget: float | None = None) -> dict:
    settings = budgeted(METHODS[method], budget)
    if method.endswith("mean rule"):  # this process only: isolated() runs it apart
        import oblivio.unlearn.instances.matching as matching

        matching.SHADOW_TPR_CEILING = 1.0
    if method.startswith("match"):
        if settings.shadows is not None:
            settings = replace(settings, shadows=str(shadows))
        return forget_by_matching(str(model), str(data), str(ids), str(out),
                                  replace(settings, reference=str(reference)), "cpu", False)
    if method == "amun":
        return forget_by_amun(str(model), str(data), str(ids), str(out), settings, "cpu", False)
    if method == "l2ul":
        return forget_instances(str(model), str(data), str(ids), str(out), settings, "cpu",
                                False)
    runner = method.split(",")[0]
    return forget_with_baseline(str(model), str(data), str(out), runner, None, str(ids),
                                settings, "cpu", False)


def pilot(data: Path, work: Path, recipe, flipped: list[str]) -> tuple[list[str], list[str]]:
    """The 16 most memorised correctly labelled images (the largest phi gap between the half
    model that trained on them and the one that did not), and 16 random others."""
    train = open_dataset(data).split("train")
    rng = np.random.default_rng(7)
    halves = np.array_split(rng.permutation(len(train)), 2)
    for h in range(2):
        out = work / f"pilot-{h}"
        if not (out / "metrics.json").exists():
            excluded = work / f"pilot-{h}-excluded.parquet"
            write_sample_ids(excluded, train.ids_at(np.sort(halves[1 - h])))
            isolated(train_to_dir, str(data), "resnet18", str(out), recipe, None,
                     str(excluded), "cpu", False)
    ds = open_dataset(data)
    everything = np.arange(len(train))
    phi = [outputs(work / f"pilot-{h}", ds, everything)[0] for h in range(2)]
    gap = np.empty(len(train))
    for h, rows in enumerate(halves):
        gap[rows] = phi[h][rows] - phi[1 - h][rows]
    clean = np.setdiff1d(everything, train.indices(flipped))
    memorised = clean[np.argsort(-gap[clean])[:PART]]
    rest = np.setdiff1d(clean, memorised)
    random_rows = rng.choice(rest, PART, replace=False)
    return train.ids_at(np.sort(memorised)), train.ids_at(np.sort(random_rows))


def judge(pool: Pool, shadows: Shadows, parts: dict, model_out: np.ndarray,
          skip_with: int | None, calibration: list[dict], excess: float) -> dict:
    """The pool's verdict (the truth for this request) and the shadows' beside it."""
    evidence = pool.score(model_out, parts, skip_with=skip_with)
    by_shadows = shadows.score(model_out, parts)
    return {"evidence": evidence, "reasons": pool_gate(evidence, calibration, excess),
            "shadows": by_shadows, "shadow_reasons": shadow_gate(by_shadows, excess)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--held", type=int, default=2)
    parser.add_argument("--shadows", type=int, default=8)
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--excess", type=float, default=0.02)
    parser.add_argument("--requests", nargs="*", default=["mixed", "mislabelled"])
    parser.add_argument("--results", default=None,
                        help="the JSON's name in bench/results (default: from the settings)")
    parser.add_argument("--budget", type=float, default=None,
                        help="equal wall-clock budgets: every method stops its steps after "
                             "this many seconds (--max-seconds; own caps raised tenfold); "
                             "written to pool-...-budget<seconds>.json")
    args = parser.parse_args()

    bench = prepare(ROOT / "out", args.train_size)
    work = ROOT / "out" / "pool" / f"{args.train_size}-e{args.epochs}"
    work.mkdir(parents=True, exist_ok=True)
    recipe = recipe_for("resnet18", epochs=args.epochs, label_smoothing=0.0)
    memorised, random_ids = pilot(bench.data, work, recipe, bench.flipped_ids)
    shadows_dir = work / f"shadows-{args.shadows}"
    shadow_plan = build_shadows(str(bench.data), shadows_dir, "resnet18", recipe, args.shadows,
                                0, "cpu", True)
    flipped = sorted(np.random.default_rng(3).choice(bench.flipped_ids, PART, replace=False))
    requests = {"mixed": sorted(memorised + random_ids), "mislabelled": list(flipped)}
    designed = {"mixed": {"pilot-memorised": memorised, "random": random_ids},
                "mislabelled": {}}
    train = open_dataset(bench.data).split("train")
    test = open_dataset(bench.data).split("test")
    budget = f"-budget{args.budget:g}" if args.budget else ""
    target = ROOT / "results" / (
        args.results or f"pool-{args.train_size}-e{args.epochs}-k{args.k}{budget}.json")
    results: dict = {"train_size": args.train_size, "epochs": args.epochs, "k": args.k,
                     "held": args.held, "label_smoothing": 0.0, "arch": "resnet18",
                     "machine": f"{platform.processor() or platform.machine()}, CPU, "
                                f"{__import__('os').cpu_count()} cores",
                     "timing": "in process (library call, model load to model write)",
                     "budget_seconds": args.budget,
                     "shadows": {"k": args.shadows, "seconds": shadow_plan["seconds"]},
                     "requests": {}}
    if target.exists():  # a run for some requests or methods adds to the last one
        results["requests"] = json.loads(target.read_text())["requests"]
    shared_with = None
    for name, ids in requests.items():
        if name not in args.requests:
            shared_with = shared_with or work / f"pool-{name}"
            continue
        pool_dir = work / f"pool-{name}"
        ids_file = write_ids(work / f"{name}.parquet", ids)
        if shared_with is not None:  # the "with" models see everything: one set serves both
            for i in range(args.k):
                link = member_dir(pool_dir, "with", i)
                if not link.exists():
                    pool_dir.mkdir(parents=True, exist_ok=True)
                    link.symlink_to(member_dir(shared_with, "with", i).resolve())
        plan = build_pool(str(bench.data), ids_file, pool_dir, "resnet18", recipe, args.k,
                          args.held, "cpu", True)
        shared_with = shared_with or pool_dir
        pool = Pool(pool_dir, str(bench.data))
        request_rows = train.indices(ids)
        parts = {part: np.isin(request_rows, train.indices(part_ids))
                 for part, part_ids in designed[name].items()}
        calibration = pool.calibration(parts)
        shadows = Shadows(shadows_dir, str(bench.data), ids)
        retrain_seconds = float(np.mean([v for k, v in plan["seconds"].items()
                                         if k.startswith(("retrain", "held"))]))
        record: dict = {"ids": len(ids), "pool": pool.summary(),
                        "retrain_seconds": retrain_seconds,
                        "memorised_by_pool": int(pool.memorised.sum()),
                        "held_retrains": calibration,
                        "shadows": shadows.summary(),
                        "retrains_by_shadows": [
                            {"shadows": (s := shadows.score(out, parts)),
                             "shadow_reasons": shadow_gate(s, args.excess)}
                            for out in np.concatenate([pool.out["retrain"], pool.out["held"]])],
                        "original": [],
                        "methods": results["requests"].get(name, {}).get("methods", {})}
        for part, mask in parts.items():
            record[f"memorised_by_pool_in_{part}"] = int((pool.memorised & mask).sum())
        test_acc = {}
        for i in range(args.k):
            with_dir = member_dir(pool_dir, "with", i)
            test_acc[i] = accuracy(load_model(with_dir), test)
            record["original"].append(judge(pool, shadows, parts, pool.out["with"][i], i,
                                            calibration, args.excess))
        for method in args.methods:
            runs = []
            for i in range(args.k):
                out = work / f"{name}-{method.replace(', ', '-')}{budget}-{i}"
                if not (out / "bench.json").exists():
                    shutil.rmtree(out, ignore_errors=True)
                    prov, wall, _ = isolated(unlearn, method, member_dir(pool_dir, "with", i),
                                             bench.data, bench.validation, ids_file, out,
                                             shadows_dir, args.budget)
                    (out / "bench.json").write_text(json.dumps(
                        {"seconds": prov["seconds"]["total"], "wall": wall,
                         "steps": prov.get("steps"),
                         "deadline_hit": bool(prov.get("deadline_hit"))}))
                timing = json.loads((out / "bench.json").read_text())
                judged = judge(pool, shadows, parts, outputs(out, open_dataset(bench.data),
                                                             pool.rows), i, calibration,
                               args.excess)
                drop = 100 * (test_acc[i] - accuracy(load_model(out), test))
                runs.append({**judged, **timing, "test_drop_points": drop,
                             "cost_vs_retrain": timing["seconds"] / retrain_seconds})
            record["methods"][method] = runs
            print(name, method, [r["reasons"] for r in runs], flush=True)
        results["requests"][name] = record
        target.write_text(json.dumps(results, indent=1))  # each request kept as it ends
        print(f"wrote {target}", flush=True)


if __name__ == "__main__":
    main()
