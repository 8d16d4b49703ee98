"""U-LiRA (Hayes et al., "Inexact unlearning needs more careful evaluations";
docs/algorithms.md §4.2):
the per-example likelihood-ratio attack that asks "was this example unlearned, or never seen?".

For every forget example, shadow models give two distributions of its logit-scaled confidence
phi = log(p_y / (1 - p_y)): under models trained WITH it and then unlearned by the method
("in"), and under models retrained WITHOUT it ("out"). Gaussians fitted per example turn a
model's phi into a log-likelihood ratio; a held-out shadow pair (one "in", one "out") gives the
attack's AUC and its balanced accuracy at the equal-error threshold. Ideal: 0.5 on both, i.e.
the unlearned model is indistinguishable from a retrained one, example by example.

Shadow models are trained by the caller (``bench/ulira.py``); these functions only score, and
every score comes from the model handed in (the authors' code scored its last shadow model
instead of the unlearned one).
"""

from __future__ import annotations

import numpy as np
import torch

MIN_STD = 1e-3


def phi_of(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """phi = log p_y - log(1 - p_y), computed from logits without forming p (stable where
    p_y rounds to 1): logit_y - logsumexp over the other classes. Differentiable: unlike the
    loss, its gradient does not vanish on an image the model is sure of."""
    true = logits.gather(1, labels[:, None])[:, 0]
    return true - logits.scatter(1, labels[:, None], float("-inf")).logsumexp(1)


def logit_confidence(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """:func:`phi_of` in double precision, as numbers."""
    return phi_of(logits.double(), labels).numpy()


def _fit(phi: np.ndarray, global_variance: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-example mean and standard deviation over shadows (rows). With few shadows the
    per-example variance is noise, so LiRA's global variance (one std for all) is the default."""
    mean = phi.mean(0)
    std = phi.std(0, ddof=1) if len(phi) > 1 else np.zeros_like(mean)
    if global_variance:
        std = np.full_like(mean, np.sqrt(np.mean(std ** 2)))
    return mean, np.maximum(std, MIN_STD)


def log_likelihood_ratio(phi_in: np.ndarray, phi_out: np.ndarray, phi: np.ndarray,
                         global_variance: bool = True) -> np.ndarray:
    """log N(phi; in) - log N(phi; out) per example. ``phi_in`` and ``phi_out`` are
    (shadows, examples); ``phi`` (examples,) comes from the model under test. Higher means
    "looks like the example was trained on and then unlearned" rather than "never seen"."""
    mu_in, sd_in = _fit(np.asarray(phi_in, np.float64), global_variance)
    mu_out, sd_out = _fit(np.asarray(phi_out, np.float64), global_variance)
    z_in, z_out = (phi - mu_in) / sd_in, (phi - mu_out) / sd_out
    return -0.5 * (z_in ** 2 - z_out ** 2) - np.log(sd_in / sd_out)


def ulira(phi_in: np.ndarray, phi_out: np.ndarray, held_in: np.ndarray, held_out: np.ndarray,
          target: np.ndarray | None = None, global_variance: bool = True) -> dict[str, float]:
    """The attack, fitted on the shadows and judged on a held-out pair.

    ``held_in`` / ``held_out``: phi of each example under one unlearned and one retrained model
    not used in the fit. Returns ``ulira_auc`` and ``ulira_balanced_acc`` (at the threshold
    where FPR + TPR - 1 is nearest 0, the equal-error point; ideal 0.5 both), and, given the
    model under test's phi as ``target``, ``ulira_target_member_rate``: the share of its forget
    examples the attack calls "unlearned, not retrained" at that threshold (ideal: the held-out
    retrained model's rate, ``ulira_out_member_rate``).
    """
    from sklearn.metrics import roc_auc_score, roc_curve  # 0.6 s: only here, as attacks.py

    s_in = log_likelihood_ratio(phi_in, phi_out, held_in, global_variance)
    s_out = log_likelihood_ratio(phi_in, phi_out, held_out, global_variance)
    scores = np.concatenate([s_in, s_out])
    truth = np.concatenate([np.ones(len(s_in)), np.zeros(len(s_out))])
    fpr, tpr, thresholds = roc_curve(truth, scores)
    i = int(np.argmin(np.abs(fpr + tpr - 1.0)))
    threshold = thresholds[i]
    result = {
        "ulira_auc": float(roc_auc_score(truth, scores)),
        "ulira_balanced_acc": float(0.5 * (tpr[i] + 1.0 - fpr[i])),
        "ulira_out_member_rate": float(np.mean(s_out >= threshold)),
    }
    if target is not None:
        s_target = log_likelihood_ratio(phi_in, phi_out, np.asarray(target), global_variance)
        result["ulira_target_member_rate"] = float(np.mean(s_target >= threshold))
    return result
