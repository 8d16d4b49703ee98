"""The gates an unlearned version must pass to be promoted, as pure functions of its
report's metrics: promotion applies them, and ``oblivio evaluate`` writes the same verdict into
report.json, so a model can be judged offline the way promotion will judge it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from oblivio.errors import OblivioError


@dataclass(frozen=True)
class Gates:
    """Thresholds an unlearned version must meet (fractions, not percent).

    Class requests: forgotten classes at most ``max_forget_acc`` on the test split, the rest
    within ``max_retain_drop``, and the MIA-efficacy; and at most
    ``max_reestimated_forget_acc`` once batch norm is re-estimated on kept data
    (docs/algorithms.md §4.5), a routine step after which a shallow edit's class comes back
    (not judged for a model without batch norm, which has nothing to re-estimate). Deletion
    requests are held to what a retrain does instead: test accuracy within
    ``instance_max_test_drop`` of the parent, and the loss attack's AUC (forgotten vs unseen
    images) within ``instance_auc_z`` of its spread of 0.5, the band a model retrained without
    the images lands in 99% of the time at the default; misclassifying deleted images is not
    required, and a model that makes them look stranger than unseen images fails too, unless
    ``instance_auc_one_sided``: a retrain makes mislabelled images far stranger than unseen
    ones (their wrong labels cost it a high loss), so a request of mislabelled or poisoned
    images can only be held to "no longer familiar". Judged against a pool of retrains
    (``oblivio evaluate --oracle-pool``), the request's memorised images must also score like
    retrains: TPR at 1% FPR at most ``pool_max_tpr_excess`` above the held-out retrains'
    (evaluation/pool.py); judged against the original's shadows (``--shadows``), at most that
    much above 1%, the out-shadows' own rate (evaluation/shadows.py)."""

    max_forget_acc: float = 0.01
    max_retain_drop: float = 0.025
    min_mia_efficacy: float = 0.9
    max_reestimated_forget_acc: float = 0.01
    instance_max_test_drop: float = 0.005
    instance_auc_z: float = 2.576
    instance_auc_one_sided: bool = False
    pool_max_tpr_excess: float = 0.02

    def __post_init__(self) -> None:
        """Accuracies, drops and efficacies are fractions: 5 meant as 5% would pass anything
        (and NaN, which no comparison holds, too)."""
        for name in ("max_forget_acc", "max_retain_drop", "min_mia_efficacy",
                     "max_reestimated_forget_acc", "instance_max_test_drop",
                     "pool_max_tpr_excess"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise OblivioError(f"--{name.replace('_', '-')} is a fraction in [0, 1] (0.05 "
                                   f"for 5%), got {value}")
        if not 0 < self.instance_auc_z < math.inf:
            raise OblivioError(f"--instance-auc-z is a positive number of spreads, got "
                               f"{self.instance_auc_z}")

    def as_params(self) -> dict[str, float]:
        return asdict(self)


def check_gates(metrics: dict[str, float], gates: Gates) -> list[str]:
    """Reasons the metrics fail the gates (empty: passed). Class mode is judged on the test
    split's forget classes, instance mode against what a retrain would do."""
    if "mia_loss_auc" in metrics:
        return _instance_failures(metrics, gates)
    failures = []
    forget = metrics.get("forget_test_acc", metrics.get("forget_train_acc"))
    if forget is None or math.isnan(forget):
        failures.append("no forget accuracy recorded")
    elif forget > gates.max_forget_acc:
        failures.append(f"forget accuracy {forget:.4f} > {gates.max_forget_acc}")
    before = metrics.get("original_retain_test_acc")
    after = metrics.get("retain_test_acc")
    if before is None or after is None:
        failures.append("no retain accuracy of the original and the new version recorded")
    elif before - after > gates.max_retain_drop:
        failures.append(f"retain accuracy dropped {before - after:.4f} > {gates.max_retain_drop}")
    mia = metrics.get("mia_efficacy_confidence")
    if mia is None or mia < gates.min_mia_efficacy:
        failures.append(f"MIA-efficacy {mia} < {gates.min_mia_efficacy}")
    back = metrics.get("reestimated_forget_test_acc")
    if back is not None and back > gates.max_reestimated_forget_acc:
        failures.append(f"forget accuracy {back:.4f} > {gates.max_reestimated_forget_acc} once "
                        f"batch norm is re-estimated on kept data")
    return failures


def _instance_failures(metrics: dict[str, float], gates: Gates) -> list[str]:
    failures = []
    before, after = metrics.get("original_retain_test_acc"), metrics.get("retain_test_acc")
    if before is None or after is None:
        failures.append("no test accuracy of the original and the new version recorded")
    elif before - after > gates.instance_max_test_drop:
        failures.append(f"test accuracy dropped {before - after:.4f} > "
                        f"{gates.instance_max_test_drop}")
    auc, sd = metrics["mia_loss_auc"], metrics.get("mia_loss_auc_sd")
    if sd is None:
        failures.append("no spread of the loss-attack AUC recorded")
    elif abs(auc - 0.5) > gates.instance_auc_z * sd and not (
            gates.instance_auc_one_sided and auc < 0.5):
        side = "still familiar" if auc > 0.5 else "stranger than unseen images"
        failures.append(f"loss-attack AUC {auc:.3f} outside 0.5 +- {gates.instance_auc_z * sd:.3f}"
                        f" ({side})")
    if SHADOWS_TPR in metrics:  # evaluated against shadows: promotion holds it to them too
        failures += shadow_failures(metrics[SHADOWS_TPR], gates.pool_max_tpr_excess)
    return failures


SHADOWS_TPR = "shadows_tpr_at_1pct_fpr"  # the report's metric, on the part the shadows judge


def shadow_failures(tpr: float, max_tpr_excess: float, part: str | None = None) -> list[str]:
    """A request judged by the original's shadows (evaluation/shadows.py) fails where its
    ``part``'s TPR at 1% FPR is more than ``max_tpr_excess`` above 1%, the out-shadows' own
    rate (they set the threshold). The metric alone does not say which part it scored: the
    memorised one where the request has any, else all of it."""
    ceiling = 0.01 + max_tpr_excess
    if tpr > ceiling:
        images = (f"{part} images" if part else
                  "images (its memorised ones, where it has any)")
        return [f"the request's {images} still look trained on (shadows): TPR at 1% FPR "
                f"{tpr:.3f} > {ceiling:.3f} (1% + {max_tpr_excess})"]
    return []


def verdict(failures: list[str]) -> str:
    return "passed" if not failures else "failed: " + "; ".join(failures)


def flat_metrics(report: dict) -> dict[str, float]:
    """The numeric metrics of a report, the original's and oracle's under a prefix."""
    out = {k: v for k, v in report.items() if isinstance(v, float) and not math.isnan(v)}
    for role in ("original", "oracle"):
        for k, v in report.get("models", {}).get(role, {}).get("metrics", {}).items():
            if isinstance(v, float) and not math.isnan(v):
                out[f"{role}_{k}"] = v
    return out


def report_gate(report: dict, gates: Gates, more: list[str] = ()) -> dict:
    """The verdict promotion would give the report's model, with its reasons (``more``: the
    pool's, when a pool judged it)."""
    reasons = check_gates(flat_metrics(report), gates) + list(more)
    return {"passed": not reasons, "reasons": reasons, "gates": gates.as_params()}
