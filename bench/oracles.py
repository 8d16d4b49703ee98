"""Fill the retrain-oracle ledger ``bench/oracles.json``: the base model first (alone, so its
training time is clean), then every missing oracle, each summarised by a process pool as soon
as it is trained while the next one trains.

    python bench/oracles.py --arch resnet18 --classes 0-9 --device cuda

``--jobs`` trains several oracles side by side. On an H100, resnet18 on 28x28 images is
launch-bound, and three side by side were slower than one at a time. Their ``seconds`` are
then an upper bound: the ledger records ``concurrent``, and the benches time retraining by the
base model."""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from class_forgetting import parse_classes
from common import (
    add_to_ledger,
    fashion_mnist,
    known_oracle,
    ledger_entry,
    oracle_key,
    trained,
)

from oblivio.training import Recipe, recipe_for, train_to_dir


def _limit_threads(n: int) -> None:
    """Summaries are many processes side by side: a few threads each, not every core each,
    so they do not starve the trainings' host threads."""
    torch.set_num_threads(n)
    threadpool_limits(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--classes", default="0-9")
    ap.add_argument("--epochs", type=int, default=Recipe().epochs)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=1, help="oracles trained at once")
    ap.add_argument("--metric-jobs", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                    help="oracles summarised at once (the attacks run on the CPU)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out"))
    args = ap.parse_args()
    out = Path(args.out)
    data = fashion_mnist(out)
    base = trained(data, args.arch, out / "models" / f"{args.arch}-base-{args.epochs}ep",
                   args.epochs, device=args.device)
    print(f"base: {base['seconds']:.1f} s, test accuracy {base['test_acc']:.4f}", flush=True)
    recipe = recipe_for(args.arch, epochs=args.epochs)
    missing = [c for c in parse_classes(args.classes)
               if known_oracle(args.arch, c, args.epochs) is None]
    spawn = mp.get_context("spawn")
    with (ProcessPoolExecutor(args.jobs, mp_context=spawn) as training,
          ProcessPoolExecutor(args.metric_jobs, mp_context=spawn, initializer=_limit_threads,
                              initargs=(2,)) as summaries):
        pending = {}
        for c in missing:
            model_dir = out / "models" / oracle_key(args.arch, c, args.epochs)
            if (model_dir / "metrics.json").exists():
                pending[summaries.submit(ledger_entry, data, model_dir, c, args.device)] = c
            else:
                pending[training.submit(train_to_dir, str(data), args.arch, str(model_dir),
                                        recipe, str(c), None, args.device, False)] = c
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                c = pending.pop(future)
                result = future.result()
                key = oracle_key(args.arch, c, args.epochs)
                if "per_class_test_acc" in result:
                    add_to_ledger({key: result | {"concurrent": args.jobs}})
                    print(f"{key}: in the ledger", flush=True)
                else:
                    print(f"{key}: trained in {result['seconds']:.1f} s", flush=True)
                    pending[summaries.submit(ledger_entry, data, out / "models" / key, c,
                                             args.device)] = c


if __name__ == "__main__":
    main()
