"""Sharding benchmark (issue 24): the pipeline's two passes over many images, capture (every
projectable layer's input statistics of a sample list) and the evaluation's prediction of the
training split, as their pipeline steps run them (``capture_step``, ``predict_shard``), each in
a fresh process.

    python bench/sharding.py --sizes 1000 5000 20000 60000 --shards 1 2 4 8 --reduce-shards 8

1. Cost against size: the whole list in one pass, for each size (images drawn from
   Fashion-MNIST's training split; prediction takes the first n rows' share of a split of n).
2. Time per shard against shards, at the largest size: a shard is a contiguous slice, so with
   S nodes the fan-out takes about one shard's time. This machine runs shards one after
   another, so shard 0 is timed (the slices differ by at most one image) and the reduce
   (merge_statistics; for prediction, the gather in evaluate_model) is timed on all S parts.
Each point is cached in bench/out/sharding/ (delete a file to measure it again); writes
bench/results/sharding.json, which ``bench/tables.py`` renders.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from oblivio.data import open_dataset
from oblivio.data.fashion_mnist import CLASSES, DEFAULT_IDX_DIR, NAME, load_split, sample_ids
from oblivio.data.sample_ids import write_sample_ids
from oblivio.data.write import write_classes, write_split
from oblivio.evaluation.outputs import gather_shards, predict_shard
from oblivio.models.checkpoint import read_config
from oblivio.steps import capture_step, merge_statistics_step

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fashion_mnist, isolated, trained

RESULTS = Path(__file__).resolve().parent / "results" / "sharding.json"


def subset(out: Path, n: int) -> Path:
    """The first ``n`` training images as a dataset of their own (what prediction walks)."""
    root = out / "data" / f"fashion-mnist-first{n}"
    if not (root / "train.parquet").exists():
        images, labels = load_split(DEFAULT_IDX_DIR, "train")
        test_images, test_labels = load_split(DEFAULT_IDX_DIR, "test")
        write_split(str(root), "train", sample_ids("train", n), labels[:n], images[:n])
        write_split(str(root), "test", sample_ids("test", len(test_labels)), test_labels,
                    test_images)
        write_classes(str(root), NAME, CLASSES)
    return root


def time_capture(model: Path, data: Path, ids: Path, work: Path, shards: int) -> dict:
    _, seconds, peak = isolated(capture_step, str(model), str(data), str(ids),
                                str(work / f"cap-{shards}-0"), 250, "cpu", 0, shards)
    parts = [work / f"cap-{shards}-0"]
    for s in range(1, shards):  # the other shards' files, for the reduce; not timed
        parts.append(work / f"cap-{shards}-{s}")
        isolated(capture_step, str(model), str(data), str(ids), str(parts[-1]), 250, "cpu", s,
                 shards)
    start = time.perf_counter()
    merge_statistics_step([str(p) for p in parts], str(work / f"merged-{shards}"))
    return {"shard_seconds": seconds, "reduce_seconds": time.perf_counter() - start,
            "peak_rss_mb": peak}


def time_predict(model: Path, data: Path, work: Path, shards: int, all_parts: bool) -> dict:
    _, seconds, peak = isolated(predict_shard, [str(model)], str(data),
                                [str(work / f"pred-{shards}-0")], 0, shards, "cpu")
    result = {"shard_seconds": seconds, "peak_rss_mb": peak}
    if all_parts:
        parts = [work / f"pred-{shards}-0"]
        for s in range(1, shards):
            parts.append(work / f"pred-{shards}-{s}")
            isolated(predict_shard, [str(model)], str(data), [str(parts[-1])], s, shards,
                     "cpu")
        start = time.perf_counter()
        gather_shards([str(p) for p in parts], read_config(model)["weights_sha256"],
                      len(open_dataset(data).split("train")))
        result["reduce_seconds"] = time.perf_counter() - start
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000, 60000])
    ap.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--reduce-shards", type=int, nargs="*", default=[8],
                    help="shard counts whose reduce is timed (every shard is computed)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out"))
    args = ap.parse_args()
    out = Path(args.out)
    full = fashion_mnist(out)
    model = out / "models" / "resnet18-fashion-mnist-e1"
    trained(full, "resnet18", model, 1)
    train = open_dataset(full).split("train")
    order = np.random.default_rng(0).permutation(len(train))
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for n in args.sizes:
            ids = work / f"ids-{n}.parquet"
            write_sample_ids(ids, train.ids_at(np.sort(order[:n])))
            data = subset(out, n) if n < len(train) else full
            largest = n == max(args.sizes)
            for shards in (args.shards if largest else [1]):
                reduce = largest and shards in args.reduce_shards
                cached = out / "sharding" / f"{n}-{shards}{'-reduce' if reduce else ''}.json"
                if not cached.exists():  # delete it to measure again
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    cached.write_text(json.dumps({
                        "images": n, "shards": shards,
                        "capture": (time_capture(model, full, ids, work, shards) if reduce
                                    else _capture_one(model, full, ids, work, shards)),
                        "predict": time_predict(model, data, work, shards, reduce)}))
                records.append(json.loads(cached.read_text()))
                print(json.dumps(records[-1]), flush=True)
    RESULTS.write_text(json.dumps({"device": "cpu", "model": "resnet18 (28x28, 1 channel)",
                                   "records": records}, indent=1))
    print(f"wrote {RESULTS}")


def _capture_one(model: Path, data: Path, ids: Path, work: Path, shards: int) -> dict:
    _, seconds, peak = isolated(capture_step, str(model), str(data), str(ids),
                                str(work / f"cap-{shards}-0"), 250, "cpu", 0, shards)
    return {"shard_seconds": seconds, "peak_rss_mb": peak}


if __name__ == "__main__":
    main()
