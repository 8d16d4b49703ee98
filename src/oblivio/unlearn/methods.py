"""The one registry of unlearning methods, as timm registers models: a name, what it forgets
(classes, training images or both), its settings type, the settings a user may set, and the
function that runs it. The CLI, the pipeline and the local runner all read it, so a method is
added in one place, and an option that belongs to another method is refused, not ignored."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from oblivio.errors import OblivioError

CLASSES, IDS = "classes", "ids"


@dataclass(frozen=True)
class Method:
    """One registered method.

    ``run(model_dir, data, out, classes, ids_file, settings, device, progress)`` writes the
    unlearned model directory and returns its provenance. ``options`` are the settings fields a
    user may set (the CLI's ``--option`` names with ``_`` for ``-``); the rest keep the
    defaults the method was measured with. ``pipeline`` says whether the Kubeflow pipeline has
    a branch for it. ``settings_ref`` names the settings class as ``module:Class`` under
    ``oblivio.unlearn``, imported when first needed: the methods' modules import torch, which
    ``oblivio methods`` and an option error need not wait for."""

    name: str
    forgets: frozenset[str]
    settings_ref: str
    options: tuple[str, ...]
    run: Callable[..., dict]
    summary: str
    pipeline: bool = False

    @property
    def settings(self) -> type:
        module, name = self.settings_ref.split(":")
        return getattr(importlib.import_module(f"oblivio.unlearn.{module}"), name)

    def settings_from(self, options: dict[str, Any]) -> Any:
        """The settings with ``options`` (those not None) set; an option of another method is
        one error naming it and the options this method takes."""
        given = {k: v for k, v in options.items() if v is not None}
        for key, value in given.items():  # NaN passes every "<= 0" check: refused here
            if isinstance(value, float) and not math.isfinite(value):
                raise OblivioError(f"--{key.replace('_', '-')} must be a finite number, "
                                   f"got {value}")
        foreign = sorted(set(given) - set(self.options))
        if foreign:
            own = ", ".join(f"--{o.replace('_', '-')}" for o in self.options) or "none"
            raise OblivioError(f"--{foreign[0].replace('_', '-')} does not apply to --method "
                               f"{self.name} (its options: {own})")
        settings = self.settings
        known = {f.name for f in fields(settings)}
        return settings(**{k: v for k, v in given.items() if k in known})

    def check_target(self, classes: object, ids_file: object) -> str:
        """``classes`` or ``ids``: what this request forgets, refused if the method cannot."""
        if (classes is None) == (ids_file is None):
            raise OblivioError("give exactly one of --classes and --forget-ids")
        target = CLASSES if classes is not None else IDS
        if target not in self.forgets:
            if target == IDS:
                raise OblivioError(f"{self.name} forgets whole classes: give --classes (for "
                                   f"sample ids use --method {DEFAULTS[IDS]} or a baseline)")
            raise OblivioError(f"{self.name} forgets training images: give --forget-ids (for "
                               f"whole classes use --method {DEFAULTS[CLASSES]})")
        return target


def _projection(model_dir: str, data: str, out: str, classes: str, ids_file: None,
                settings: Any, device: str, progress: bool) -> dict:
    from oblivio.unlearn.classes.forget import forget_classes

    return forget_classes(model_dir, data, classes, out, settings, device, progress=progress)


def _contrast(model_dir: str, data: str, out: str, classes: str, ids_file: None,
              settings: Any, device: str, progress: bool) -> dict:
    from oblivio.unlearn.classes.forget import forget_by_contrast

    return forget_by_contrast(model_dir, data, classes, out, settings, device,
                              progress=progress)


def _l2ul(model_dir: str, data: str, out: str, classes: None, ids_file: str, settings: Any,
          device: str, progress: bool) -> dict:
    from oblivio.unlearn.instances.l2ul import forget_instances

    return forget_instances(model_dir, data, ids_file, out, settings, device, progress)


def _match(model_dir: str, data: str, out: str, classes: None, ids_file: str, settings: Any,
           device: str, progress: bool) -> dict:
    from oblivio.unlearn.instances.matching import forget_by_matching

    return forget_by_matching(model_dir, data, ids_file, out, settings, device, progress)


def _amun(model_dir: str, data: str, out: str, classes: None, ids_file: str, settings: Any,
          device: str, progress: bool) -> dict:
    from oblivio.unlearn.baselines.amun import forget_by_amun

    return forget_by_amun(model_dir, data, ids_file, out, settings, device, progress)


def _baseline(name: str) -> Callable[..., dict]:
    def run(model_dir: str, data: str, out: str, classes: str | None, ids_file: str | None,
            settings: Any, device: str, progress: bool) -> dict:
        from oblivio.unlearn.baselines.run import forget_with_baseline

        return forget_with_baseline(model_dir, data, out, name, classes, ids_file, settings,
                                    device, progress)
    return run


SAMPLING = ("retain_per_class", "forget_samples", "val_per_class", "val_forget_samples",
            "column_budget", "forget_target", "seed")
GRADIENT = ("epochs", "lr", "forget_target", "max_seconds", "seed")


def _registry() -> dict[str, Method]:
    both = frozenset({CLASSES, IDS})
    base = "tuning:BaselineSettings"
    entries = [
        Method("projection", frozenset({CLASSES}), "classes.forget:ProjectionSettings",
               ("alpha_r", "alpha_f", "forget_margin", "bn_rounds", *SAMPLING), _projection,
               "training-free scaled subspace projection (the default for classes)", True),
        Method("contrast", frozenset({CLASSES}), "classes.forget:ContrastSettings",
               ("ratio", "rounds", "blocks", *SAMPLING), _contrast,
               "training-free energy contrast (the better choice for a ViT)", True),
        Method("match", frozenset({IDS}), "instances.matching:MatchSettings",
               ("lr", "max_steps", "tolerance", "retain_guard", "reference", "targets",
                "shadows", "recalibrate_bn", "max_seconds", "seed"), _match,
               "move the images' losses to unseen images' losses, as a retrain would "
               "(the default for ids)", True),
        Method("l2ul", frozenset({IDS}), "instances.l2ul:L2ULSettings",
               ("ablation", "variant", "bn", "mask", "eps", "adv_per_instance", "pgd_iters",
                "max_epochs", "lr", "recalibrate_bn", "max_seconds", "seed"), _l2ul,
               "adversarial examples + weight importance: misclassify or relabel (for "
               "memorised, mislabelled images)", True),
        Method("relabel", frozenset({IDS}), "instances.relabel:RelabelSettings",
               (*GRADIENT, "retain_guard"), _baseline("relabel"),
               "fine-tune the images towards the model's runner-up class, retain guard on "
               "(for mislabelled images: a retrain predicts their true class)", True),
        Method("amun", frozenset({IDS}), "baselines.amun:AmunSettings",
               ("epochs", "lr", "eps", "pgd_iters", "max_seconds", "seed"), _amun,
               "AMUN: fine-tune on the images and their nearest adversarial examples, "
               "labelled as the model mispredicts them"),
        Method("finetune", both, base, ("epochs", "lr", "max_seconds", "seed"),
               _baseline("finetune"),
               "fine-tune on the retain set"),
        Method("neggrad", both, base, (*GRADIENT, "retain_guard"),
               _baseline("neggrad"), "gradient ascent on the forget set"),
        Method("neggrad+", both, base, (*GRADIENT, "retain_guard"),
               _baseline("neggrad+"),
               "gradient ascent on the forget set, descent on the retain set"),
        Method("random-label", both, base, GRADIENT, _baseline("random-label"),
               "fine-tune the forget set on random other labels"),
        Method("scrub", both, "baselines.scrub:ScrubSettings",
               ("epochs", "lr", "max_epochs", "retain_batches", "rewind", "max_seconds",
                "seed"),
               _baseline("scrub"),
               "SCRUB: the original as teacher, away from it on D_f, with it on D_r; "
               "--rewind: SCRUB+R"),
        Method("salun", both, "baselines.salun:SalunSettings", (*GRADIENT, "saliency"),
               _baseline("salun"),
               "SalUn: random labels on the weights most salient to the forget loss"),
        Method("ssd", both, base, ("fisher_samples", "seed"), _baseline("ssd"),
               "selective synaptic dampening (training-free)"),
        Method("retrain", both, base, (), _baseline("retrain"),
               "the oracle: retrain without the forget set, with the parent's recipe"),
    ]
    return {m.name: m for m in entries}


METHODS: dict[str, Method] = _registry()
#: What ``--method auto`` and the pipeline's branches use for each kind of request.
DEFAULTS = {CLASSES: "projection", IDS: "match"}


def method(name: str) -> Method:
    """The registered method ``name``; an unknown name is one error listing the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise OblivioError(f"unknown method {name!r}; use auto or one of "
                           f"{', '.join(METHODS)}") from None


def method_for(name: str, classes: object, ids_file: object) -> Method:
    """The method a request runs: ``auto`` is the default for what it forgets."""
    if name == "auto":
        if (classes is None) == (ids_file is None):
            raise OblivioError("give exactly one of --classes and --forget-ids")
        name = DEFAULTS[CLASSES if classes is not None else IDS]
    chosen = method(name)
    chosen.check_target(classes, ids_file)
    return chosen


def pipeline_methods(target: str) -> tuple[str, ...]:
    """The methods the pipeline has a branch for, for one kind of request."""
    return tuple(m.name for m in METHODS.values() if m.pipeline and target in m.forgets)


def check_pipeline_params(params: dict) -> None:
    """The pipeline's choices that arrive as strings, checked before any step works, so a
    typo is one error rather than a silently taken default branch."""
    for key, target in (("class_method", CLASSES), ("instance_method", IDS)):
        allowed = pipeline_methods(target)
        if params.get(key, allowed[0]) not in allowed:
            choices = f"{', '.join(allowed[:-1])} or {allowed[-1]}"
            raise OblivioError(f"{key.replace('_', ' ')} must be {choices}, "
                               f"got {params[key]!r}")
    for key in ("alpha_mode", "ratio_mode"):
        if params.get(key, "auto") not in ("auto", "fixed"):
            raise OblivioError(f"{key.replace('_', ' ')} must be auto or fixed, "
                               f"got {params[key]!r}")
    if not 1 <= params.get("shards", 1) <= 256:
        raise OblivioError(f"shards must be 1 to 256, got {params['shards']}")
    if params.get("relearn_steps", 0) < 0:
        raise OblivioError("relearn steps must be 0 or more (0: off), got "
                           f"{params['relearn_steps']}")
    if not params.get("instance_max_seconds", 0) >= 0:  # NaN too
        raise OblivioError("instance max seconds must be 0 or more (0: no budget), got "
                           f"{params['instance_max_seconds']}")
