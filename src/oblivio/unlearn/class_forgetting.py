"""Training-free class forgetting (ALGORITHMS.md section 1) as one job: sample, capture retain and
forget statistics, compute subspaces, project the weights with alpha chosen on a validation split
drawn from the training data (never the test split), and write the unlearned model directory.

The stages are separate functions (``capture_statistics``, ``compute_subspaces``,
``Projector``/``select_alpha``) so the pipeline can run each as its own step.
"""

from __future__ import annotations

import resource
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from oblivio.data import open_dataset
from oblivio.data.reader import Split
from oblivio.errors import OblivioError
from oblivio.models.checkpoint import load_model, save_model
from oblivio.models.inference import predict_logits
from oblivio.training import resolve_device, seed_everything
from oblivio.unlearn.projection import Projector
from oblivio.unlearn.samples import draw_class_samples
from oblivio.unlearn.statistics import capture_statistics
from oblivio.unlearn.subspaces import compute_subspaces

ALPHA_R = (10.0, 30.0, 100.0, 300.0, 1000.0)
ALPHA_F = (1.0, 3.0, 10.0, 30.0, 100.0)


def alpha_grid() -> list[tuple[float, float]]:
    """The (alpha_r, alpha_f) pairs swept by ``--alpha auto`` (alpha_f <= alpha_r/1000 skipped)."""
    return [(r, f) for r in ALPHA_R for f in ALPHA_F if f > r / 1000]


@dataclass(frozen=True)
class GridPoint:
    alpha_r: float
    alpha_f: float
    retain_acc: float
    forget_acc: float

    @property
    def score(self) -> float:
        """What alpha selection maximises: retain accuracy x (1 - forget accuracy)."""
        return self.retain_acc * (1.0 - self.forget_acc)


def score_on(model: nn.Module, split: Split, rows: np.ndarray, forget: list[int],
             alpha: tuple[float, float], device: str) -> GridPoint:
    logits = predict_logits(model, split, rows, device=device)
    labels = split.labels[torch.as_tensor(rows)]
    correct = logits.argmax(1) == labels
    is_forget = torch.isin(labels, torch.tensor(forget))
    return GridPoint(alpha[0], alpha[1], float(correct[~is_forget].float().mean()),
                     float(correct[is_forget].float().mean()))


def _winner(grid: list[GridPoint], forget_target: float) -> GridPoint:
    forgetting = [p for p in grid if p.forget_acc <= forget_target]
    if forgetting:
        return max(forgetting, key=lambda p: (round(p.retain_acc, 9), -round(p.forget_acc, 9),
                                              -grid.index(p)))
    return max(grid, key=lambda p: (round(p.score, 9), -grid.index(p)))


def select_alpha(projector: Projector, split: Split, rows: np.ndarray, forget: list[int],
                 pairs: list[tuple[float, float]], forget_target: float = 0.01,
                 device: str = "cpu", progress: bool = True
                 ) -> tuple[GridPoint, list[GridPoint]]:
    """Score the grid on the validation rows and leave the model at the winner.

    Among pairs whose validation forget accuracy is at most ``forget_target``, the highest
    retain accuracy wins: forgetting is the requirement, then the least damage. (Maximising
    retain x (1 - forget) alone trades retain points for forget points one for one and picks
    needlessly harsh pairs.) If no pair reaches the target, the best product wins.

    Each alpha_r row is scanned by increasing alpha_f, which only forgets more and keeps less,
    so a row stops at its first pair that reaches the target: the rest are dominated. Then the
    geometric midpoint between the winner's alpha_f and the row's last miss is tried once.
    """
    grid: list[GridPoint] = []

    def evaluate(pair: tuple[float, float]) -> GridPoint:
        projector.apply(*pair)
        point = score_on(projector.model, split, rows, forget, pair, device)
        grid.append(point)
        return point

    rows_by_r: dict[float, list[float]] = {}
    for r, f in pairs:
        rows_by_r.setdefault(r, []).append(f)
    bar = tqdm(total=len(pairs), desc="alpha grid", disable=not progress or len(pairs) == 1,
               leave=False)
    for r, fs in rows_by_r.items():
        ordered = sorted(fs)
        for i, f in enumerate(ordered):
            bar.update()
            if evaluate((r, f)).forget_acc <= forget_target:
                bar.update(len(ordered) - i - 1)  # the rest of the row is dominated
                break
    bar.close()
    best = _winner(grid, forget_target)
    misses = [p.alpha_f for p in grid if p.alpha_r == best.alpha_r and p.alpha_f < best.alpha_f]
    if len(pairs) > 1 and misses and best.forget_acc <= forget_target:
        evaluate((best.alpha_r, round(float(np.sqrt(best.alpha_f * max(misses))), 3)))
        best = _winner(grid, forget_target)
    projector.apply(best.alpha_r, best.alpha_f)
    return best, grid


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def forgotten_classes(config: dict) -> list[int]:
    """Classes a model directory has already forgotten, from its provenance."""
    return list(config.get("provenance", {}).get("forgotten_classes", []))


def forget_classes(model_dir: str, data: str, classes: str | list[int], out: str,
                   alpha: str | tuple[float, float] = "auto", retain_per_class: int = 100,
                   forget_samples: int = 1000, val_per_class: int = 50, seed: int = 0,
                   device: str = "auto", batch_size: int = 250, progress: bool = True,
                   forget_target: float = 0.01, val_forget_samples: int = 250) -> dict:
    """Forget whole classes from a model directory; write the unlearned model to ``out``.

    Returns the provenance recorded in the new model's config. Every input is checked before
    any compute, and nothing is written unless the whole job succeeds.
    """
    device = resolve_device(device)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    model = load_model(model_dir, device)
    dataset = open_dataset(data)
    config = model.config
    if config["num_classes"] != dataset.num_classes:
        raise OblivioError(f"model has {config['num_classes']} classes, dataset {data} has "
                           f"{dataset.num_classes}")
    new = dataset.class_indices(classes)
    already = forgotten_classes(config)
    forget_all = sorted(set(new) | set(already))
    if len(forget_all) >= dataset.num_classes:
        raise OblivioError("cannot forget every class: nothing would be left to keep")
    pairs = alpha_grid() if alpha == "auto" else [tuple(map(float, alpha))]
    if any(a <= 0 for pair in pairs for a in pair):
        raise OblivioError(f"alpha values must be positive, got {pairs[0]}")
    if not 0.0 <= forget_target <= 1.0:
        raise OblivioError(f"forget target must be in [0, 1], got {forget_target}")
    train = dataset.split("train")
    absent = [c for c in new if not bool((train.labels == c).any())]
    if absent:
        raise OblivioError(f"class {absent[0]} has no training samples in {data}")
    seed_everything(seed)
    labels = train.labels.clone()
    labels[torch.isin(labels, torch.tensor(already or [-1]))] = -1  # drawn by no one
    sets = draw_class_samples(labels, dataset.num_classes, new, retain_per_class,
                              forget_samples, val_per_class, seed, val_forget_samples)
    timings["load_and_sample"] = time.perf_counter() - start

    t = time.perf_counter()
    retain_stats = capture_statistics(model, train, sets.retain, batch_size, device, progress,
                                      "capture retain")
    timings["capture_retain"] = time.perf_counter() - t
    t = time.perf_counter()
    forget_stats = capture_statistics(model, train, sets.forget, batch_size, device, progress,
                                      "capture forget")
    timings["capture_forget"] = time.perf_counter() - t
    t = time.perf_counter()
    subspaces = compute_subspaces(retain_stats, forget_stats)
    del retain_stats, forget_stats
    timings["subspaces"] = time.perf_counter() - t
    t = time.perf_counter()
    projector = Projector(model, subspaces, device)
    best, grid = select_alpha(projector, train, sets.validation, forget_all, pairs, forget_target,
                              device, progress)
    timings["projection"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - start
    provenance = {
        "kind": "unlearned",
        "method": "projection",
        "forget_classes": new,
        "forgotten_classes": forget_all,
        "alpha": {"retain": best.alpha_r, "forget": best.alpha_f},
        "alpha_mode": "auto" if alpha == "auto" else "fixed",
        "forget_target": forget_target,
        "alpha_grid": [{**asdict(p), "score": p.score} for p in grid],
        "validation": {"retain_acc": best.retain_acc, "forget_acc": best.forget_acc},
        "samples": {"retain": len(sets.retain), "forget": len(sets.forget),
                    "validation": len(sets.validation), "retain_per_class": retain_per_class},
        "seed": seed,
        "device": device,
        "seconds": timings,
        "peak_rss_mb": _peak_rss_mb(),
        "parent": {"path": model_dir, "weights_sha256": config["weights_sha256"]},
    }
    save_model(model.cpu(), out, arch=config["arch"], class_names=config["class_names"],
               img_size=config["img_size"], parent_fingerprint=config["weights_sha256"],
               provenance=provenance)
    return provenance
