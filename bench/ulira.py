"""U-LiRA benchmark (issue 4): can a per-example likelihood-ratio attack tell images that were
trained on and then unlearned from images that were never seen?

    python bench/ulira.py --k 16 --shadows 4 --shadow-size 20000 --epochs 4 --method match

Shadow pair s (s = 0 .. shadows): a random
subset S_s of the training split without the forget images F. "out" trains on S_s (the retrain
oracle of that world); "in" trains on S_s + F with the same recipe and is then unlearned by the
method. Every shadow uses the architecture's default recipe with ``--epochs`` epochs, so the
attack sees models like the one under test at a fraction of its cost. Heavy (2 (shadows + 1)
trainings): a benchmark, never a test. Each model is cached in ``bench/out/ulira/``, so the run
resumes. Every pair is held out once (the attack fitted on the others): the AUC is the mean over
that rotation, beside the worst. Writes ``bench/out/ulira-<arch>-<method>-n<size>-e<epochs>``
``.json`` and ``.md``, with the same attack on the models before unlearning
(``original_ulira_auc``: how much there was to hide), the steps taken and the test accuracy
lost in each world.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fashion_mnist, isolated, markdown_table

from oblivio.data import open_dataset
from oblivio.data.sample_ids import write_sample_ids
from oblivio.evaluation.ulira import logit_confidence, ulira
from oblivio.models import load_model
from oblivio.models.inference import accuracy, predict_logits
from oblivio.training import recipe_for, train_to_dir
from oblivio.unlearn.baselines.run import BASELINES, forget_with_baseline
from oblivio.unlearn.instances.l2ul import forget_instances
from oblivio.unlearn.instances.matching import forget_by_matching


def unlearn(method: str, model_dir: str, data: str, ids_file: str, out: str) -> dict:
    if method == "l2ul":
        return forget_instances(model_dir, data, ids_file, out, device="cpu", progress=False)
    if method == "match":  # unseen images: the test split, as a user runs it
        return forget_by_matching(model_dir, data, ids_file, out, device="cpu", progress=False)
    return forget_with_baseline(model_dir, data, out, method, ids_file=ids_file, device="cpu",
                                progress=False)


def test_accuracy(model_dir: Path, data: Path) -> float:
    return accuracy(load_model(model_dir), open_dataset(data).split("test"))


def phi_of(model_dir: Path, data: Path, rows: np.ndarray) -> np.ndarray:
    train = open_dataset(data).split("train")
    logits = predict_logits(load_model(model_dir), train, rows)
    return logit_confidence(logits, train.labels[rows])


def shadow_pair(s: int, args: argparse.Namespace, data: Path, work: Path,
                forget: np.ndarray, forget_file: Path) -> tuple[np.ndarray, ...]:
    """phi of the forget images under the unlearned "in", the retrained "out" and the original
    (trained with them, not unlearned) "in" model s."""
    train = open_dataset(data).split("train")
    others = np.setdiff1d(np.arange(len(train)), forget)
    subset = np.random.default_rng(1000 + s).choice(others, args.shadow_size, replace=False)
    recipe = recipe_for(args.arch, epochs=args.epochs, seed=s)
    dirs = {}
    for side, keep in (("out", subset), ("in", np.union1d(subset, forget))):
        model_dir = work / f"{side}{s}"
        if not (model_dir / "metrics.json").exists():
            excluded = work / f"{side}{s}-excluded.parquet"
            write_sample_ids(excluded, train.ids_at(np.setdiff1d(np.arange(len(train)), keep)))
            isolated(train_to_dir, str(data), args.arch, str(model_dir), recipe, None,
                     str(excluded), "cpu", False)
        dirs[side] = model_dir
    unlearned = work / f"in{s}-{args.method}"
    if not (unlearned / "config.json").exists():
        isolated(unlearn, args.method, str(dirs["in"]), str(data), str(forget_file),
                 str(unlearned))
    return (phi_of(unlearned, data, forget), phi_of(dirs["out"], data, forget),
            phi_of(dirs["in"], data, forget))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--method", default="match", choices=["match", "l2ul", *BASELINES])
    ap.add_argument("--k", type=int, default=16, help="forget images")
    ap.add_argument("--shadows", type=int, default=4, help="shadow pairs fitted (one more judges)")
    ap.add_argument("--shadow-size", type=int, default=20_000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "out"))
    args = ap.parse_args()
    out = Path(args.out)
    data = fashion_mnist(out)
    work = out / "ulira" / f"{args.arch}-k{args.k}-n{args.shadow_size}-e{args.epochs}-s{args.seed}"
    work.mkdir(parents=True, exist_ok=True)
    train = open_dataset(data).split("train")
    forget = np.sort(np.random.default_rng(args.seed).permutation(len(train))[:args.k])
    forget_file = work / "forget.parquet"
    write_sample_ids(forget_file, train.ids_at(forget))
    pairs = [shadow_pair(s, args, data, work, forget, forget_file)
             for s in range(args.shadows + 1)]
    # every pair judges once, the attack fitted on the others: the mean and the worst AUC
    # over the rotation, not one held-out pair's draw
    unlearned, original = [], []
    for j in range(len(pairs)):
        fit = [p for i, p in enumerate(pairs) if i != j]
        phi_out = np.stack([p[1] for p in fit])
        unlearned.append(ulira(np.stack([p[0] for p in fit]), phi_out, pairs[j][0],
                               pairs[j][1])["ulira_auc"])
        # the same attack on the models before unlearning: how much there was to hide
        original.append(ulira(np.stack([p[2] for p in fit]), phi_out, pairs[j][2],
                              pairs[j][1])["ulira_auc"])
    # what the unlearning cost the model: test accuracy points lost in each world
    test_drop = [100 * (test_accuracy(work / f"in{s}", data)
                        - test_accuracy(work / f"in{s}-{args.method}", data))
                 for s in range(args.shadows + 1)]
    steps = [json.loads((work / f"in{s}-{args.method}" / "config.json").read_text())
             ["provenance"].get("steps") for s in range(args.shadows + 1)]
    report = {"arch": args.arch, "method": args.method, "k": args.k, "shadows": args.shadows,
              "shadow_size": args.shadow_size, "epochs": args.epochs,
              "ulira_auc": float(np.mean(unlearned)),
              "ulira_auc_worst": float(max(unlearned, key=lambda a: abs(a - 0.5))),
              "original_ulira_auc": float(np.mean(original)),
              "original_ulira_auc_range": [float(min(original)), float(max(original))],
              "unlearning_steps": steps,
              "test_drop_points": test_drop,
              "mean_test_drop_points": float(np.mean(test_drop)),
              "mean_phi_unlearned": float(np.mean([p[0] for p in pairs])),
              "mean_phi_retrained": float(np.mean([p[1] for p in pairs])),
              "mean_phi_original": float(np.mean([p[2] for p in pairs]))}
    name = f"ulira-{args.arch}-{args.method}-n{args.shadow_size}-e{args.epochs}"
    (out / f"{name}.json").write_text(json.dumps(report, indent=2))
    md = [f"## U-LiRA, {args.arch} + {args.method}, {args.k} forget images", "",
          f"{args.shadows + 1} shadow pairs, each held out once (fitted on the others); "
          f"shadows train on "
          f"{args.shadow_size} images for {args.epochs} epochs. Ideal: AUC and balanced "
          "accuracy 0.5 (unlearned indistinguishable from retrained).", "",
          markdown_table(list(report), [list(report.values())])]
    (out / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
