"""The flat metric set of one model (docs/algorithms.md §4.1-4.3), from its outputs on train
and test.

Class mode: the forget set is every train row of the forget classes; retain rows are the rest;
the attacks' non-members are the test rows of the retain classes (the forget classes' test rows
are what the attack would have to judge, so they are kept out of its training set).
Instance mode: the forget set is the given train rows; non-members are the test split (its
evaluation half where a method took its unseen reference from the other: data/unseen.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from oblivio.evaluation import attacks
from oblivio.evaluation.outputs import Outputs
from oblivio.evaluation.probe import fit_linear_probe, probe_accuracy

HIGHER_KEEPS = "higher = more kept"
LOWER_FORGETS = "lower = more forgotten"
#: every key of the report, with the direction of its score
DIRECTIONS = {
    "retain_train_acc": HIGHER_KEEPS,
    "forget_train_acc": LOWER_FORGETS,
    "retain_test_acc": HIGHER_KEEPS,
    "forget_test_acc": LOWER_FORGETS,
    "composite_test": "higher = better trade-off: retain_test_acc x (1 - forget_test_acc)",
    "mia_efficacy_confidence": "higher = more forgotten (share of forget set called non-member)",
    "mia_efficacy_entropy": "higher = more forgotten (share of forget set called non-member)",
    "mia_efficacy_m_entropy": "higher = more forgotten (share of forget set called non-member)",
    "mia_entropy_lr_member_rate": "lower = more forgotten (share of forget set called member)",
    "mia_loss_lr_cv_acc": "0.5 = forget set indistinguishable from unseen data",
    "mia_loss_auc": "0.5 = the forgotten images' losses look like unseen images' (above: "
                    "still familiar, below: suspiciously unfamiliar)",
    "mia_loss_auc_sd": "the spread of mia_loss_auc between two draws of unseen images of "
                       "these sizes: a retrain lands within 2.6 of these of 0.5 99% of the time",
    "forget_train_loss": "the retrain's value = behaves like a model that never saw them",
    "test_loss": "lower = better (mean cross-entropy on the test split)",
    "probe_forget_test_acc": "lower = forgotten deeper than the head (linear probe on features)",
    "probe_forget_train_acc": "lower = forgotten deeper than the head (probe fitted without "
                              "the forget instances)",
    "relearn_steps": "higher = forgotten deeper: fine-tuning steps on a few forgotten images "
                     "until half their class's test images are right again (none: not within "
                     "the cap); the retrain's value is the reference",
    "relearn_forget_test_acc": "lower = forgotten deeper (the forgotten classes' test accuracy "
                               "after the relearning cap)",
    "relearn_retain_test_acc": "the other classes' test accuracy after relearning (a low value: "
                               "the fine-tuning only learnt to say the forgotten class)",
    "reestimated_forget_test_acc": "lower = more forgotten (the forgotten classes' test accuracy "
                                   "after batch norm is re-estimated on kept training images; "
                                   "none: no batch norm)",
    "reestimated_retain_test_acc": "higher = more kept (the other classes' test accuracy after "
                                   "the same re-estimate)",
}
CLASS_KEYS = ["retain_train_acc", "forget_train_acc", "retain_test_acc", "forget_test_acc",
              "composite_test", "mia_efficacy_confidence", "mia_efficacy_entropy",
              "mia_efficacy_m_entropy", "mia_entropy_lr_member_rate", "mia_loss_lr_cv_acc",
              "probe_forget_test_acc"]
RELEARN_KEYS = ["relearn_steps", "relearn_forget_test_acc", "relearn_retain_test_acc"]
INSTANCE_KEYS = ["retain_train_acc", "forget_train_acc", "forget_train_loss", "retain_test_acc",
                 "test_loss", "composite_test", "mia_loss_auc", "mia_loss_auc_sd",
                 "mia_efficacy_confidence", "mia_efficacy_entropy", "mia_efficacy_m_entropy",
                 "mia_entropy_lr_member_rate", "mia_loss_lr_cv_acc", "probe_forget_train_acc"]


@dataclass
class ForgetSpec:
    """Which train rows are forgotten; ``classes`` is empty in instance mode. ``outside_*``
    mark the rows of classes forgotten before a deletion request (instance mode): a retrain
    never meets them, so the request is judged among the classes the model still knows."""

    classes: list[int]
    train_mask: np.ndarray
    test_mask: np.ndarray  # all False in instance mode
    outside_train: np.ndarray | None = None  # None: no row is outside
    outside_test: np.ndarray | None = None
    attack_test: np.ndarray | None = None  # test rows the attacks may use (None: all); a
    # method's unseen reference is kept out of them (data/unseen.py)

    def __post_init__(self) -> None:
        if self.outside_train is None:
            self.outside_train = np.zeros_like(self.train_mask)
        if self.outside_test is None:
            self.outside_test = np.zeros_like(self.test_mask)
        if self.attack_test is None:
            self.attack_test = np.ones_like(self.test_mask)

    @property
    def mode(self) -> str:
        return "class" if self.classes else "instance"


def _acc(outputs: Outputs, mask: np.ndarray) -> float:
    return float(outputs.correct[torch.from_numpy(mask)].double().mean()) if mask.any() \
        else float("nan")


def mia_features(out: Outputs) -> dict[str, np.ndarray]:
    probs = out.probs
    return {"confidence": attacks.confidence(probs, out.labels),
            "entropy": attacks.entropy(probs),
            "m_entropy": attacks.modified_entropy(probs, out.labels),
            "loss": attacks.cross_entropy(probs, out.labels)}


def compute_metrics(train: Outputs, test: Outputs, spec: ForgetSpec, num_classes: int,
                    seed: int = 0, svc_cap: int | None = None) -> dict[str, float]:
    """Every metric of ``CLASS_KEYS`` or ``INSTANCE_KEYS`` for one model's outputs.

    ``svc_cap`` bounds the per-side sample count of the SVC attacks (their fit is quadratic);
    None uses all |non-members|, as the metric is defined.
    """
    rng = np.random.default_rng(seed)
    forget = spec.train_mask & ~spec.outside_train
    retain = ~spec.train_mask & ~spec.outside_train
    non_member_rows = ~spec.test_mask & ~spec.outside_test
    m: dict[str, float] = {
        "retain_train_acc": _acc(train, retain),
        "forget_train_acc": _acc(train, forget),
        "retain_test_acc": _acc(test, non_member_rows),
    }
    if spec.mode == "class":
        m["forget_test_acc"] = _acc(test, spec.test_mask)
        m["composite_test"] = m["retain_test_acc"] * (1 - m["forget_test_acc"])
    else:
        m["composite_test"] = m["retain_test_acc"] * (1 - m["forget_train_acc"])
    tr, te = mia_features(train), mia_features(test)
    non_member_rows = non_member_rows & spec.attack_test  # accuracy above had every row
    non_members = np.flatnonzero(non_member_rows)
    retain_rows = np.flatnonzero(retain)
    n = min(len(non_members), len(retain_rows), svc_cap or len(non_members))
    members = rng.choice(retain_rows, n, replace=False)
    non_members_svc = rng.choice(non_members, n, replace=False)
    for name in ("confidence", "entropy", "m_entropy"):
        m[f"mia_efficacy_{name}"] = attacks.svc_efficacy(
            tr[name][members], te[name][non_members_svc], tr[name][forget])
    m["mia_entropy_lr_member_rate"] = attacks.entropy_lr_member_rate(
        tr["entropy"][retain], te["entropy"][non_members], tr["entropy"][forget])
    unseen = spec.test_mask if spec.mode == "class" else non_member_rows
    m["mia_loss_lr_cv_acc"] = attacks.loss_lr_cv_accuracy(tr["loss"][forget], te["loss"][unseen],
                                                          rng)
    if spec.mode == "class":
        head = fit_linear_probe(train.features, train.labels, num_classes)
        mask = torch.from_numpy(spec.test_mask)
        m["probe_forget_test_acc"] = probe_accuracy(head, test.features[mask],
                                                    test.labels[mask])
    else:
        m["forget_train_loss"] = float(tr["loss"][forget].mean())
        m["test_loss"] = float(te["loss"][non_member_rows].mean())
        m["mia_loss_auc"] = attacks.familiarity_auc(tr["loss"][forget], te["loss"][non_member_rows])
        m["mia_loss_auc_sd"] = attacks.auc_band(int(forget.sum()), int(non_member_rows.sum()),
                                                z=1.0)
        keep = torch.from_numpy(retain)
        head = fit_linear_probe(train.features[keep], train.labels[keep], num_classes)
        mask = torch.from_numpy(forget)
        m["probe_forget_train_acc"] = probe_accuracy(head, train.features[mask],
                                                     train.labels[mask])
    return m


def per_class_accuracy(outputs: Outputs, num_classes: int) -> list[float]:
    correct = torch.bincount(outputs.labels[outputs.correct], minlength=num_classes).double()
    total = torch.bincount(outputs.labels, minlength=num_classes).double()
    return (correct / total.clamp_min(1)).tolist()
