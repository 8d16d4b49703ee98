"""Per-example evidence against a pool of retrains: does the model behave, image by image of a
deletion request, like a model retrained without it?

One aggregate attack (the loss AUC of forgotten vs unseen images) cannot tell forgetting from
doing nothing on typical images, which a retrain also fits. A pool can: K models trained
without the request ("retrain", seeds 0..K-1), K trained with it ("with", the same seeds: each
pair differs only by the request), and H retrains kept out of every fit ("held", the control
that must pass). Per forget example, in the line of LiRA/U-LiRA (Carlini et al. 2022, Hayes et
al. 2024), the NeurIPS 2023 challenge's per-example epsilon (Triantafillou et al. 2024) and
KLoM (Georgiev et al. 2024):

- ``phi`` (logit-scaled confidence) under each member gives Gaussians "trained on it" and
  "retrained without it"; a model's likelihood-ratio score says which it resembles. Scores of
  the retrains themselves, each left out of its own fit, set the thresholds at 1% and 5% false
  positives; the share of the model's examples above them is its TPR (a retrain: about the FPR).
- the per-example epsilon of a Gaussian mechanism whose shift is the model's distance from the
  retrains in their spread (mu-GDP, Dong et al. 2019), at ``DELTA``;
- KLoM: the KL divergence of the model's margin from the retrains' margins per example.

The request's *memorised* part is where the pool shows a gap: "with" and "retrain" means more
than ``MEMORISED_GAP`` spreads apart. There a model that did nothing is caught; on the rest even
a retrain fits the images, and nothing can (or need) tell.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from oblivio.data import open_dataset
from oblivio.data.sample_ids import ids_sha256, read_sample_ids, write_sample_ids
from oblivio.data.storage import is_local
from oblivio.errors import OblivioError
from oblivio.evaluation.ulira import MIN_STD, logit_confidence
from oblivio.models.checkpoint import load_model
from oblivio.models.inference import predict_logits

POOL_FILE = "pool.json"
IDS_FILE = "forget.parquet"
ROLES = ("retrain", "with", "held")
FPRS = (0.01, 0.05)
DELTA = 1e-5
MEMORISED_GAP = 2.0
HELD_SEED = 1000


def _members(plan: dict) -> list[tuple[str, int, int]]:
    """(role, index, seed): a retrain and a "with" model share a seed; held ones do not."""
    return ([("retrain", i, i) for i in range(plan["k"])]
            + [("with", i, i) for i in range(plan["k"])]
            + [("held", j, HELD_SEED + j) for j in range(plan["held"])])


def member_dir(pool: str | os.PathLike[str], role: str, index: int) -> Path:
    return Path(pool, f"{role}-{index}")


def trained_like(original: str | os.PathLike[str]) -> tuple[str, object]:
    """The architecture and training recipe ``original`` records: a pool's members are trained
    as it was, so its retrains are the oracle a user would train."""
    from oblivio.models.checkpoint import read_config
    from oblivio.training import Recipe

    config = read_config(original)
    training = config.get("provenance", {}).get("training")
    if not training or "recipe" not in training:
        raise OblivioError(f"{original} records no training recipe (a model trained by "
                           "`oblivio train` does): a pool must be trained as the original was")
    return config["arch"], Recipe(**training["recipe"])


def build_pool(data: str, forget_ids: str | os.PathLike[str], out: str | os.PathLike[str],
               arch: str, recipe, k: int = 4, held: int = 2, device: str = "auto",
               progress: bool = True) -> dict:
    """Train the pool into ``out`` (resumable: finished members are kept, a half-written one is
    trained again) with the original's ``arch`` and ``recipe`` (:func:`trained_like`).
    Returns pool.json's content, with each member's seconds."""
    from tqdm import tqdm

    from oblivio.training import train_to_dir

    if k < 2 or held < 1:
        raise OblivioError(f"a pool needs k >= 2 and held >= 1 (its spread and its control), "
                           f"got k={k}, held={held}")
    if not is_local(os.fspath(out)):
        raise OblivioError(f"a pool is a local directory (its members are loaded many times), "
                           f"not {os.fspath(out)}")
    ids = read_sample_ids(forget_ids)
    train = open_dataset(data).split("train")
    train.indices(ids)  # a foreign id is one line, before any training
    out = Path(out)
    plan = {"arch": arch, "recipe": asdict(recipe), "data": str(data), "k": k, "held": held,
            "forget_ids_sha256": ids_sha256(ids), "forget_ids_count": len(ids)}
    found = json.loads((out / POOL_FILE).read_text()) if (out / POOL_FILE).exists() else None
    if found is not None:
        differs = [key for key in plan if key not in ("k", "held") and found[key] != plan[key]]
        if differs:
            raise OblivioError(f"{out} holds a pool for another request or recipe "
                               f"({', '.join(differs)} differ): give a new --out")
        plan["seconds"] = found.get("seconds", {})
    elif out.exists() and not {p.name for p in out.iterdir()} <= {
            member_dir(out, r, i).name for r, i, _ in _members(plan)}:
        raise OblivioError(f"{out} is not empty and holds no pool")  # members alone: shared
    out.mkdir(parents=True, exist_ok=True)
    write_sample_ids(out / IDS_FILE, ids)
    plan.setdefault("seconds", {})
    for role, index, seed in tqdm(_members(plan), desc="pool", disable=not progress):
        target = member_dir(out, role, index)
        if (target / "metrics.json").exists():
            continue
        shutil.rmtree(target, ignore_errors=True)
        start = time.perf_counter()
        train_to_dir(data, arch, str(target), replace(recipe, seed=seed),
                     exclude_ids=None if role == "with" else str(out / IDS_FILE),
                     device=device, progress=False)
        plan["seconds"][target.name] = time.perf_counter() - start
        (out / POOL_FILE).write_text(json.dumps(plan, indent=1))
    (out / POOL_FILE).write_text(json.dumps(plan, indent=1))
    return plan


def read_pool(pool: str | os.PathLike[str]) -> dict:
    path = Path(pool, POOL_FILE)
    if not path.exists():
        raise OblivioError(f"{pool} is no oracle pool (no {POOL_FILE}): build one with "
                           "`oblivio pool build`")
    plan = json.loads(path.read_text())
    missing = [member_dir(pool, r, i).name for r, i, _ in _members(plan)
               if not (member_dir(pool, r, i) / "metrics.json").exists()]
    if missing:
        raise OblivioError(f"the pool {pool} is unfinished ({', '.join(missing)} missing): run "
                           "`oblivio pool build` again to finish it")
    return plan


def outputs(model: str | os.PathLike[str], data, rows: np.ndarray,
            device: str = "cpu") -> np.ndarray:
    """(2, examples): phi and the margin (true logit minus the largest other) of ``rows``."""
    train = data.split("train")
    logits = predict_logits(load_model(model, device), train, rows, device=device).double()
    labels = train.labels[rows]
    phi = logit_confidence(logits, labels)
    true = logits.gather(1, labels[:, None])[:, 0]
    others = logits.scatter(1, labels[:, None], float("-inf")).amax(1)
    return np.stack([phi, (true - others).numpy()])


def spread(values: np.ndarray) -> float:
    """LiRA's global standard deviation over examples: with a few models, one per example is
    noise."""
    return max(float(np.sqrt(np.mean(values.var(0, ddof=1)))), MIN_STD)


def llr(x: np.ndarray, mu_in: np.ndarray, sd_in: float, mu_out: np.ndarray,
         sd_out: float) -> np.ndarray:
    from scipy.stats import norm  # 1 s to import: only where scores are made, not in every step

    return (norm.logpdf(x, mu_in, sd_in) - norm.logpdf(x, mu_out, sd_out))


def gdp_epsilon(mu: np.ndarray | float, delta: float = DELTA) -> np.ndarray:
    """The epsilon at ``delta`` of a mechanism whose two outputs are unit Gaussians ``mu``
    apart (Dong, Roth and Su's mu-GDP): delta(eps) = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu -
    mu/2), solved for eps by bisection, every mu at once (delta(eps) falls as eps grows)."""
    from scipy.stats import norm  # 1 s to import: only where scores are made, not in every step

    mu = np.maximum(np.asarray(mu, np.float64), 1e-12)

    def excess(eps: np.ndarray) -> np.ndarray:
        return (norm.cdf(-eps / mu + mu / 2)
                - np.exp(eps) * norm.cdf(-eps / mu - mu / 2) - delta)

    low, high = np.zeros_like(mu), np.ones_like(mu)
    while (grow := excess(high) > 0).any():
        high = np.where(grow, 2 * high, high)
    for _ in range(60):
        mid = (low + high) / 2
        above = excess(mid) > 0
        low, high = np.where(above, mid, low), np.where(above, high, mid)
    return np.where(excess(np.zeros_like(mu)) > 0, high, 0.0)


def part_evidence(mask: np.ndarray, scores: np.ndarray, negatives: np.ndarray,
                  eps: np.ndarray, klom: np.ndarray, phi: np.ndarray,
                  retrain_mean_phi: float | None, with_mean_phi: float | None) -> dict | None:
    """One part's evidence: the share of its scores above the negatives' 1% and 5% tails,
    epsilon, KLoM and phi (None for an empty part)."""
    if not mask.any():
        return None
    return {
        "examples": int(mask.sum()),
        **{f"tpr_at_{round(f * 100)}pct_fpr": float(np.mean(
            scores[mask] > np.quantile(negatives, 1 - f))) for f in FPRS},
        "epsilon_mean": float(eps[mask].mean()), "epsilon_max": float(eps[mask].max()),
        "klom_mean": float(klom[mask].mean()), "klom_max": float(klom[mask].max()),
        "mean_phi": float(phi[mask].mean()),
        "retrain_mean_phi": retrain_mean_phi, "with_mean_phi": with_mean_phi,
    }


class Pool:
    """A finished pool's outputs on the request's images, and the scores of any model."""

    def __init__(self, pool: str | os.PathLike[str], data: str, device: str = "cpu") -> None:
        self.plan = read_pool(pool)
        self.path = Path(pool)
        dataset = open_dataset(data)
        self.ids = read_sample_ids(self.path / IDS_FILE)
        self.rows = dataset.split("train").indices(self.ids)
        self.dataset, self.device = dataset, device
        self.out = {role: np.stack([outputs(member_dir(pool, r, i), dataset, self.rows, device)
                                    for r, i, _ in _members(self.plan) if r == role])
                    for role in ROLES}  # role -> (models, 2, examples)
        phi_in, phi_out = self.out["with"][:, 0], self.out["retrain"][:, 0]
        self.gap = (phi_in.mean(0) - phi_out.mean(0)) / np.sqrt(
            (spread(phi_in) ** 2 + spread(phi_out) ** 2) / 2)
        self.memorised = self.gap > MEMORISED_GAP
        self.negatives = self._leave_one_out()

    def _scores(self, phi: np.ndarray, skip: int | None = None,
                skip_with: int | None = None) -> np.ndarray:
        """Likelihood-ratio scores of ``phi`` (examples,): "trained on" vs "retrained".
        ``skip`` leaves that retrain out of the means (its own score is then a true negative),
        ``skip_with`` that model trained with the request (a model derived from it is then
        judged by models it does not come from); the spreads, one number for all examples,
        stay the whole pool's: k - 1 models may be one."""
        inside, outside = self.out["with"][:, 0], self.out["retrain"][:, 0]
        mean_in = inside[[m for m in range(len(inside)) if m != skip_with]].mean(0)
        mean_out = outside[[m for m in range(len(outside)) if m != skip]].mean(0)
        return llr(phi, mean_in, spread(inside), mean_out, spread(outside))

    def _leave_one_out(self) -> np.ndarray:
        return np.stack([self._scores(self.out["retrain"][m, 0], skip=m)
                         for m in range(len(self.out["retrain"]))])

    def _klom(self, margin: np.ndarray) -> np.ndarray:
        """KL(N(margin, s) || N(retrains' mean margin, s)) per example, s the retrains'
        spread: zero where the model's margin is the retrains' average."""
        ref = self.out["retrain"][:, 1]
        return 0.5 * ((margin - ref.mean(0)) / spread(ref)) ** 2

    def score(self, out: np.ndarray, parts: dict[str, np.ndarray] | None = None,
              skip_with: int | None = None) -> dict:
        """Evidence for one model's (2, examples) outputs, over the whole request, its
        memorised part and any other ``parts`` (name: mask over the request's images)."""
        phi, margin = out
        scores = self._scores(phi, skip_with=skip_with)
        outside = self.out["retrain"][:, 0]
        mu = np.abs(phi - outside.mean(0)) / spread(outside)
        eps = gdp_epsilon(mu)
        klom = self._klom(margin)
        result = {}
        parts = {"all": np.ones_like(self.memorised), "memorised": self.memorised,
                 **(parts or {})}
        for part, mask in parts.items():
            result[part] = part_evidence(
                mask, scores, self.negatives[:, mask].ravel(), eps, klom, phi,
                float(outside[:, mask].mean()) if mask.any() else None,
                float(self.out["with"][:, 0, mask].mean()) if mask.any() else None)
        return result

    def score_model(self, model: str | os.PathLike[str]) -> dict:
        return self.score(outputs(model, self.dataset, self.rows, self.device))

    def calibration(self, parts: dict[str, np.ndarray] | None = None) -> list[dict]:
        """The held retrains, scored as a method would be: the control that must pass."""
        return [self.score(out, parts) for out in self.out["held"]]

    def summary(self) -> dict:
        seconds = self.plan.get("seconds", {})
        return {"path": str(self.path), "arch": self.plan["arch"], "k": self.plan["k"],
                "held": self.plan["held"], "examples": len(self.rows),
                "memorised": int(self.memorised.sum()), "memorised_gap": MEMORISED_GAP,
                "fprs": list(FPRS), "delta": DELTA,
                "negatives_per_example": len(self.out["retrain"]),
                "training_seconds": float(sum(seconds.values())) if seconds else None}


def pool_gate(evidence: dict, calibration: list[dict], max_tpr_excess: float) -> list[str]:
    """Reasons a model fails the pool: on the memorised part (the whole request when the pool
    finds none), its TPR at 1% FPR more than ``max_tpr_excess`` above the held retrains'.
    KLoM and epsilon are reported beside it, not gated: with a few retrains their spread is
    too wide for a bound a retrain passes reliably."""
    part = "memorised" if evidence.get("memorised") else "all"
    mine = evidence[part]
    key = f"tpr_at_{round(FPRS[0] * 100)}pct_fpr"
    ceiling = max(c[part][key] for c in calibration) + max_tpr_excess
    reasons = []
    if mine[key] > ceiling:
        reasons.append(f"the request's {part} images still look trained on: TPR at 1% FPR "
                       f"{mine[key]:.3f} > {ceiling:.3f} (held retrains + {max_tpr_excess})")
    return reasons


def pool_evidence(pool: str | os.PathLike[str], data: str, model: str | os.PathLike[str],
                  ids_sha256_: str, max_tpr_excess: float, device: str = "cpu") -> dict:
    """The report's "pool" section for ``model``: its evidence, the held retrains' (the
    calibration), the pool's size and noise, and the pool gate's reasons."""
    loaded = Pool(pool, data, device)
    if loaded.plan["forget_ids_sha256"] != ids_sha256_:
        raise OblivioError(f"the pool {pool} was built for another request "
                           f"({loaded.plan['forget_ids_count']} ids, digest "
                           f"{loaded.plan['forget_ids_sha256'][:12]}): build one for these ids")
    evidence = loaded.score_model(model)
    calibration = loaded.calibration()
    return {**loaded.summary(), "model": evidence, "held_retrains": calibration,
            "max_tpr_excess": max_tpr_excess,
            "reasons": pool_gate(evidence, calibration, max_tpr_excess)}
