"""Membership-inference attacks (docs/algorithms.md §4.2). Every feature comes from the model under
test. Directions: MIA-efficacy, higher = more forgotten; entropy-LR member rate, lower = more
forgotten; loss-LR accuracy, 0.5 = indistinguishable from unseen data.

scikit-learn and SciPy are imported inside the attacks: at module level they cost every CLI
command (this module is reachable from the registry of methods) about 2 s of start-up."""

from __future__ import annotations

import math

import numpy as np
import torch

EPS = 1e-30


def confidence(probs: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """p_y, the probability of the true label."""
    return probs.gather(1, labels[:, None])[:, 0].numpy()


def entropy(probs: torch.Tensor) -> np.ndarray:
    """Shannon entropy of the prediction, in nats."""
    return (-(probs * probs.clamp_min(EPS).log()).sum(1)).numpy()


def modified_entropy(probs: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Mentr = -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i) (Song & Mittal)."""
    p_y = probs.gather(1, labels[:, None])[:, 0]
    others = -(probs * (1 - probs).clamp_min(EPS).log())
    others = others.sum(1) - others.gather(1, labels[:, None])[:, 0]
    return (-(1 - p_y) * p_y.clamp_min(EPS).log() + others).numpy()


def cross_entropy(probs: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Per-sample loss -log p_y."""
    return -np.log(np.maximum(confidence(probs, labels), EPS))


def _column(x: np.ndarray) -> np.ndarray:
    return np.nan_to_num(np.asarray(x, dtype=np.float64)).reshape(-1, 1)


def svc_efficacy(members: np.ndarray, non_members: np.ndarray, target: np.ndarray) -> float:
    """MIA-efficacy: an RBF SVC fitted on one feature (members vs non-members, balanced by the
    caller); the fraction of ``target`` it calls NON-member."""
    x = np.concatenate([_column(members), _column(non_members)])
    y = np.r_[np.ones(len(members)), np.zeros(len(non_members))]
    from sklearn.svm import SVC

    attack = SVC(C=3, kernel="rbf", gamma="auto").fit(x, y)
    return float((attack.predict(_column(target)) == 0).mean())


def entropy_lr_member_rate(members: np.ndarray, non_members: np.ndarray,
                           target: np.ndarray) -> float:
    """Entropy-LR: balanced logistic regression on entropy; the fraction of ``target`` it calls
    member."""
    x = np.concatenate([_column(members), _column(non_members)])
    y = np.r_[np.ones(len(members)), np.zeros(len(non_members))]
    from sklearn.linear_model import LogisticRegression

    attack = LogisticRegression(class_weight="balanced").fit(x, y)
    return float((attack.predict(_column(target)) == 1).mean())


def loss_lr_cv_accuracy(forget_loss: np.ndarray, test_loss: np.ndarray,
                        rng: np.random.Generator, splits: int = 10) -> float:
    """Loss-LR: logistic regression telling forget from test by their loss, balanced by
    subsampling the larger side, scored by stratified ``splits``-fold cross-validation."""
    n = min(len(forget_loss), len(test_loss))
    if n < splits:
        return float("nan")
    f = rng.choice(forget_loss, n, replace=False)
    t = rng.choice(test_loss, n, replace=False)
    x = np.concatenate([_column(f), _column(t)])
    y = np.r_[np.ones(n), np.zeros(n)]
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    folds = StratifiedKFold(splits, shuffle=True, random_state=int(rng.integers(2**31)))
    return float(cross_val_score(LogisticRegression(), x, y, cv=folds).mean())


def familiarity_auc(forget_loss: np.ndarray, unseen_loss: np.ndarray) -> float:
    """AUC of the loss attack that calls the lower-loss image the member: the chance that a
    forgotten image has a lower loss than an unseen one (ties count half). 0.5: the forgotten
    images look unseen; above: still familiar; below: suspiciously unfamiliar."""
    if len(forget_loss) == 0 or len(unseen_loss) == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([forget_loss, unseen_loss]))
    n_f, n_u = len(forget_loss), len(unseen_loss)
    higher = ranks[:n_f].sum() - n_f * (n_f + 1) / 2  # pairs where the forget loss is higher
    return float(1.0 - higher / (n_f * n_u))


def auc_band(n_forget: int, n_unseen: int, z: float = 2.576) -> float:
    """Half-width of the band around 0.5 that the AUC of two samples from one distribution
    stays in with the probability of ``z`` (Mann-Whitney's null standard deviation): a model
    retrained without the images passes a gate of 0.5 +- this band 99% of the time."""
    return z * math.sqrt((n_forget + n_unseen + 1) / (12 * n_forget * n_unseen))
