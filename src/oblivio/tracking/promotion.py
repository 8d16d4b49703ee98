"""Promotion through gates, and the deletion rule: a version may become ``champion`` only if it
has forgotten everything the current champion has forgotten, so neither promotion nor rollback
can bring deleted data back."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from mlflow.exceptions import MlflowException

from oblivio.errors import OblivioError
from oblivio.tracking.registry import (
    CHAMPION,
    TAG,
    client,
    forgotten,
    resolve_version,
    set_champion,
)


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
    images can only be held to "no longer familiar"."""

    max_forget_acc: float = 0.01
    max_retain_drop: float = 0.025
    min_mia_efficacy: float = 0.9
    max_reestimated_forget_acc: float = 0.01
    instance_max_test_drop: float = 0.005
    instance_auc_z: float = 2.576
    instance_auc_one_sided: bool = False

    def __post_init__(self) -> None:
        """Accuracies, drops and efficacies are fractions: 5 meant as 5% would pass anything
        (and NaN, which no comparison holds, too)."""
        for name in ("max_forget_acc", "max_retain_drop", "min_mia_efficacy",
                     "max_reestimated_forget_acc", "instance_max_test_drop"):
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
    return failures


def verdict(failures: list[str]) -> str:
    return "passed" if not failures else "failed: " + "; ".join(failures)


def deletion_conflicts(candidate_tags: dict[str, str], champion_tags: dict[str, str]) -> list[str]:
    """What the champion has forgotten that the candidate still knows."""
    classes_c, batches_c = forgotten(candidate_tags)
    classes_h, batches_h = forgotten(champion_tags)
    out = [f"class {c}" for c in sorted(classes_h - classes_c)]
    out += [f"deletion batch {b[:12]}" for b in sorted(batches_h - batches_c)]
    return out


def promote(name: str, version: str, gates: Gates | None = None) -> str:
    """Make ``version`` of ``name`` the champion if it passes the gates (unlearned versions)
    and honours every deletion the current champion honours. Returns a one-line summary."""
    gates = gates or Gates()
    target = resolve_version(f"models:/{name}/{version}")
    try:
        champion = client().get_model_version_by_alias(name, CHAMPION)
    except MlflowException:  # no champion yet: nothing to honour
        champion = None
    if champion is not None and champion.version == target.version:
        _refuse_unhonoured(name, target, f"{CHAMPION} now, but")  # the rule holds here too
        return f"{name} version {version} is already {CHAMPION}"
    if champion is not None:
        conflicts = deletion_conflicts(target.tags, champion.tags)
        if conflicts:
            raise OblivioError(
                f"refused: version {version} still knows what {CHAMPION} version "
                f"{champion.version} has forgotten ({', '.join(conflicts)})")
    if target.tags.get(f"{TAG}method", "trained") != "trained":
        metrics = client().get_run(target.run_id).data.metrics if target.run_id else {}
        failures = check_gates(metrics, gates)
        if failures:
            raise OblivioError(f"refused: version {version} fails the gates ({verdict(failures)})")
    _refuse_unhonoured(name, target, "refused")
    set_champion(name, str(target.version), "promoted")
    # checked again once the alias is set: another promotion and a batch may have honoured a
    # request in between; the champion then goes to the newest version honouring everything
    try:
        _refuse_unhonoured(name, target, "reverted")
    except OblivioError:
        fallback = _newest_honouring(name)
        if fallback is not None:
            set_champion(name, fallback, "reverted: a request was honoured meanwhile")
        raise
    before = f" (was version {champion.version})" if champion is not None else ""
    return f"{name} version {version} is now {CHAMPION}{before}"


def restore_honouring_champion(name: str) -> str | None:
    """After a request was honoured: if a promotion moved the champion, since that request's
    version was checked, to one that does not honour it, the champion goes to the newest
    version that honours everything. Returns the version it went to (None: nothing to do)."""
    from oblivio.ledger.retention import unhonoured
    from oblivio.ledger.store import Ledger

    champion = client().get_model_version_by_alias(name, CHAMPION)
    if not unhonoured(Ledger(), name, champion.tags):
        return None
    fallback = _newest_honouring(name)
    if fallback is None:
        raise OblivioError(f"no version of {name} honours every honoured request")
    set_champion(name, fallback, "restored: the champion missed an honoured request")
    return fallback


def _newest_honouring(name: str) -> str | None:
    from oblivio.ledger.retention import unhonoured
    from oblivio.ledger.store import Ledger
    from oblivio.tracking.registry import versions

    ledger = Ledger()
    for version in reversed(versions(name)):
        if not unhonoured(ledger, name, version.tags):
            return str(version.version)
    return None


def _refuse_unhonoured(name: str, target, verb: str) -> None:
    """Deletion-monotone against the ledger: every honoured request must be forgotten."""
    from oblivio.ledger.retention import unhonoured
    from oblivio.ledger.store import Ledger

    missing = unhonoured(Ledger(), name, target.tags)
    if missing:
        raise OblivioError(f"{verb}: version {target.version} still knows what honoured deletion "
                           f"request(s) {', '.join(missing[:5])} removed")
