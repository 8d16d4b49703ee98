"""Forgetting and its evidence: `oblivio forget`, `methods`, `evaluate`, `pool build`, `pool
shadows`."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from oblivio.cli.app import app, one_line_errors
from oblivio.cli.options import (
    ForgottenIds,
)
from oblivio.errors import OblivioError


@app.command()
@one_line_errors
def forget(
    model: Annotated[str, typer.Option(help="Model directory (or s3:// URI) to unlearn from.")],
    data: Annotated[str, typer.Option(help="Dataset the model was trained on.")],
    out: Annotated[str, typer.Option(help="Model directory to write.")],
    classes: Annotated[str | None, typer.Option(
        help="Classes to forget: indices or names, e.g. 7,2.")] = None,
    forget_ids: Annotated[str | None, typer.Option(
        help="Text or Parquet file of training sample ids to forget (a deletion request).")]
        = None,
    forgotten_ids: ForgottenIds = None,
    method: Annotated[str, typer.Option(
        help="auto (projection for classes, match for ids) or any method `oblivio methods` "
             "lists. Each method takes only its own options below; another's is an error.")]
        = "auto",
    alpha_r: Annotated[float | None, typer.Option(
        help="projection: fixed retain alpha (with --alpha-f); without both, the pair is "
             "chosen on a validation split of the training data.")] = None,
    alpha_f: Annotated[float | None, typer.Option(help="projection: fixed forget alpha.")] = None,
    forget_margin: Annotated[float | None, typer.Option(
        help="projection: factor on the chosen alpha_f, because validation images come from "
             "the training split and forget more readily than unseen ones (default 1.732).")]
        = None,
    bn_rounds: Annotated[int | None, typer.Option(
        help="projection: most times to re-estimate batch norm on the retain samples and "
             "project again, stopping once the validation forget rows hold (default 3; 0 is "
             "faster, but re-estimating batch norm on kept data then brings a forgotten class "
             "back).")] = None,
    ratio: Annotated[str | None, typer.Option(
        help="contrast: 'auto' (default) chooses the forget/retain energy ratio above which "
             "input directions are removed on the validation split, or a fixed ratio (> 1).")]
        = None,
    rounds: Annotated[int | None, typer.Option(
        help="contrast: most rounds (each re-captures the edited model's statistics and "
             "removes again; default 2); with --ratio auto the number is chosen too.")] = None,
    blocks: Annotated[str | None, typer.Option(
        help="contrast: edit only the network's last N blocks; 'auto' (default) chooses the "
             "depth on the validation split with --ratio auto (every layer with a fixed "
             "ratio).")] = None,
    retain_per_class: Annotated[int | None, typer.Option(
        help="projection, contrast: retain samples per kept class (default 100).")] = None,
    forget_samples: Annotated[int | None, typer.Option(
        help="projection, contrast: samples of the forget class(es) (default 250).")] = None,
    val_per_class: Annotated[int | None, typer.Option(
        help="projection, contrast: validation samples per kept class (default 50).")] = None,
    val_forget_samples: Annotated[int | None, typer.Option(
        help="projection, contrast: validation samples of the forget class(es) (default "
             "250).")] = None,
    column_budget: Annotated[float | None, typer.Option(
        help="projection, contrast: conv-layer columns captured per sample set, about this "
             "times the layer's fan-in (a few positions of each image; default 8); 0 keeps "
             "every position.")] = None,
    forget_target: Annotated[float | None, typer.Option(
        help="Forget accuracy to reach: the validation target of projection and contrast "
             "(default 0.01), the stopping rule of neggrad, neggrad+, random-label, relabel "
             "(default 0 for ids, 0.01 for classes).")] = None,
    ablation: Annotated[str | None, typer.Option(
        help="l2ul: naive, adv or adv+imp (default).")] = None,
    variant: Annotated[str | None, typer.Option(
        help="l2ul: misclassify (default), or relabel (random new labels, recorded with the "
             "model).")] = None,
    bn: Annotated[str | None, typer.Option(
        help="l2ul: batch norm in train (default) or eval mode.")] = None,
    adv_per_instance: Annotated[int | None, typer.Option(
        help="l2ul: adversarial examples per instance (default 20, 200 from 100 classes).")]
        = None,
    pgd_iters: Annotated[int | None, typer.Option(
        help="l2ul: L2-PGD iterations (default 100); amun: per radius tried (default "
             "20).")] = None,
    max_epochs: Annotated[int | None, typer.Option(
        help="l2ul: cap on epochs over the forget set (default 300); scrub: epochs that "
             "begin with max-steps on the forget set (default 2).")] = None,
    retain_batches: Annotated[int | None, typer.Option(
        help="scrub: min-step batches of the retain set per epoch (default: a pass).")] = None,
    rewind: Annotated[bool | None, typer.Option(
        "--rewind", help="scrub: SCRUB+R, back to the epoch whose forget error is closest to "
                         "the original's on unseen images (for deletion requests).")] = None,
    saliency: Annotated[float | None, typer.Option(
        help="salun: share of the weights updated, the most salient to the forget loss "
             "(default 0.5).")] = None,
    mask: Annotated[str | None, typer.Option(
        help="l2ul: which images the ascent still pushes: eval (default: those the model in "
             "eval mode still gets right), train (judged in the step's train mode) or none "
             "(all, the authors').")] = None,
    eps: Annotated[float | None, typer.Option(
        help="l2ul: L2 radius of the adversarial examples (default: the authors' 4.0 scaled "
             "to the image size, 2.02 for 28x28 grey); amun: the first radius tried, doubled "
             "until the prediction flips (default 0.25).")] = None,
    max_steps: Annotated[int | None, typer.Option(
        help="match: cap on steps (default 200).")] = None,
    tolerance: Annotated[float | None, typer.Option(
        help="match: stop when the forgotten images' losses are this close (Wasserstein-1) "
             "to unseen ones (default: as close as a random unseen set of their size).")]
        = None,
    retain_guard: Annotated[float | None, typer.Option(
        help="match, relabel, neggrad, neggrad+: the most the steps may raise the mean loss "
             "of a fixed set of retain images, as a share of the unseen images' mean loss, "
             "before they are undone and the step size halved (match, relabel: default 0.1; "
             "neggrad: off).")]
        = None,
    reference: Annotated[str | None, typer.Option(
        help="match: dataset whose test split holds the unseen images that set the target "
             "(default: --data's holdout split, else the half of its test split that "
             "evaluation leaves out).")] = None,
    targets: Annotated[str | None, typer.Option(
        help="match: rank (default: each image gets the unseen loss of its rank) or "
             "neighbours (the loss of unseen images as typical as it, by their nearest "
             "retain images: for memorised or mislabelled images) or shadows (each image's "
             "own loss under the shadows that never saw it; needs --shadows).")] = None,
    shadows: Annotated[str | None, typer.Option(
        help="match: the original's shadow models (`oblivio pool shadows`), for --targets "
             "shadows.")] = None,
    recalibrate_bn: Annotated[int | None, typer.Option(
        help="match, l2ul: re-estimate batch-norm statistics on this many retain batches "
             "afterwards (default 0).")] = None,
    epochs: Annotated[float | None, typer.Option(
        help="finetune: epochs over D_r; neggrad, neggrad+, random-label, salun: over D_f "
             "(default 1); relabel: cap on epochs over D_f (default 100); scrub: SCRUB "
             "epochs (default 3).")] = None,
    lr: Annotated[float | None, typer.Option(
        help="match, l2ul and the gradient baselines: learning rate (default 1e-3 for l2ul, "
             "5e-4 for scrub, 0.013 for salun, 0.01 for match and the other baselines).")]
        = None,
    max_seconds: Annotated[float | None, typer.Option(
        help="match, l2ul, relabel, amun and the gradient baselines but ssd: stop the steps "
             "after this many seconds, where they are (a budget in wall-clock time, on top of "
             "the method's own cap; default: none).")] = None,
    fisher_samples: Annotated[int | None, typer.Option(
        help="ssd: training samples for the Fisher of D (default: all).")] = None,
    seed: Annotated[int | None, typer.Option(
        help="Seed of the sample draws and of the method (default 0).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    force: Annotated[bool, typer.Option(
        help="Replace --out when it is a directory with content.")] = False,
) -> None:
    """Forget whole classes or individual training images; every method writes the same model
    directory, evaluated by `oblivio evaluate`."""
    from oblivio.data.storage import check_output_dir
    from oblivio.models.forgotten import given_ids
    from oblivio.unlearn.methods import method_for

    check_output_dir(out, [model, data, forget_ids, *(forgotten_ids or [])], force)
    chosen = method_for(method, classes, forget_ids)
    settings = chosen.settings_from({
        "alpha_r": alpha_r, "alpha_f": alpha_f, "forget_margin": forget_margin,
        "bn_rounds": bn_rounds, "ratio": _auto_or(ratio, float, "--ratio", "a number"),
        "rounds": rounds,
        "blocks": _auto_or(blocks, int, "--blocks", "a number of blocks"),
        "retain_per_class": retain_per_class, "forget_samples": forget_samples,
        "val_per_class": val_per_class, "val_forget_samples": val_forget_samples,
        "column_budget": column_budget,
        "forget_target": forget_target, "ablation": ablation, "variant": variant, "bn": bn,
        "adv_per_instance": adv_per_instance, "pgd_iters": pgd_iters,
        "max_epochs": max_epochs, "mask": mask, "eps": eps, "max_steps": max_steps,
        "tolerance": tolerance, "retain_guard": retain_guard, "reference": reference,
        "targets": targets, "shadows": shadows, "recalibrate_bn": recalibrate_bn,
        "epochs": epochs, "lr": lr, "max_seconds": max_seconds,
        "fisher_samples": fisher_samples, "retain_batches": retain_batches, "rewind": rewind,
        "saliency": saliency, "seed": seed})
    with given_ids(forgotten_ids):
        result = chosen.run(model, data, out, classes, forget_ids, settings, device, True)
    if result.get("guard_stopped"):
        print(f"warning: {chosen.name} stopped after {len(result['halved_at'])} undone steps: "
              "even the smallest step raised the retain images' loss more than --retain-guard "
              "allows, so the images are only partly forgotten", file=sys.stderr)
    elif result.get("deadline_hit"):
        print(f"warning: {chosen.name} stopped at --max-seconds before reaching its target",
              file=sys.stderr)
    elif result.get("cap_hit"):
        cap = {"match": "--max-steps", "l2ul": "--max-epochs"}.get(chosen.name, "--epochs")
        print(f"warning: {chosen.name} stopped at its cap before reaching its target "
              f"(raise {cap})", file=sys.stderr)
    shown = {k: result[k] for k in ("method", "forget_classes", "forgotten_classes",
                                    "forget_ids_count", "alpha", "ratio", "rounds", "blocks",
                                    "validation",
                                    "steps", "cap_hit", "deadline_hit", "forget_acc",
                                    "auc_start",
                                    "auc_end", "forgotten_acc")
             if k in result}
    print(json.dumps({"out": out, **shown,
                      "seconds": {k: round(v, 2) for k, v in result["seconds"].items()}}))


def _auto_or(text: str | None, kind: type, option: str, what: str) -> str | float | int | None:
    """'auto', a number of ``kind``, or None (not given)."""
    if text is None or text == "auto":
        return text
    try:
        return kind(text)
    except ValueError:
        raise OblivioError(f"{option} takes 'auto' or {what}, got {text!r}") from None


@app.command()
@one_line_errors
def methods() -> None:
    """The unlearning methods: what each forgets and the options it takes."""
    from oblivio.unlearn.methods import METHODS

    for m in METHODS.values():
        print(f"{m.name:<13} {'/'.join(sorted(m.forgets)):<12} {m.summary}")
        options = " ".join(f"--{o.replace('_', '-')}" for o in m.options)
        print(f"{'':<13} {'':<12} options: {options or 'none'}")


@app.command()
@one_line_errors
def evaluate(
    model: Annotated[str, typer.Option(help="Model directory to evaluate.")],
    data: Annotated[str, typer.Option(help="Dataset directory or s3:// URI.")],
    out: Annotated[str, typer.Option(help="Report directory to write.")],
    forget_classes: Annotated[str | None, typer.Option(
        help="Forgotten classes, e.g. 7 or 7,2 (class mode).")] = None,
    forget_ids: Annotated[str | None, typer.Option(
        help="Text or Parquet file of forgotten train sample ids (instance mode).")] = None,
    original: Annotated[str | None, typer.Option(help="The model before unlearning.")] = None,
    oracle: Annotated[str | None, typer.Option(
        help="The retrain oracle (trained without the forget set).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the attacks' sample draws.")] = 0,
    svc_samples: Annotated[int, typer.Option(min=0,
        help="Per-side samples of the SVC attacks (0: all of the test split).")] = 5000,
    relearn_steps: Annotated[int, typer.Option(
        help="Also fine-tune each model on a few forgotten images for up to this many steps "
             "and count the steps until the class returns (class mode; 0: off).")] = 0,
    oracle_pool: Annotated[str | None, typer.Option(
        help="A pool of retrains for these --forget-ids (`oblivio pool build`): per-example "
             "evidence, and its gate.")] = None,
    shadows: Annotated[str | None, typer.Option(
        help="The original's shadow models (`oblivio pool shadows`): per-example evidence "
             "for any --forget-ids, and its gate.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    force: Annotated[bool, typer.Option(
        help="Replace --out when it is a directory with content.")] = False,
) -> None:
    """Accuracy, membership-inference attacks, a linear probe, batch norm re-estimated on kept
    images (classes) and optionally relearning; the gates' verdict: report.json/.md/.html."""
    from oblivio.data.storage import check_output_dir
    from oblivio.evaluation.evaluate import evaluate as run
    from oblivio.evaluation.relearn import RelearnSettings
    from oblivio.evaluation.report import markdown

    check_output_dir(out, [model, data, forget_ids, original, oracle, oracle_pool, shadows],
                     force)
    report = run(model, data, out, forget_classes, forget_ids, original, oracle, device, seed,
                 svc_samples or None,
                 relearning=RelearnSettings(max_steps=relearn_steps) if relearn_steps else None,
                 oracle_pool=oracle_pool, shadows=shadows)
    print(markdown(report), end="")
    print(json.dumps({"out": out, "gate": report["gate"]["passed"],
                      "seconds": round(report["seconds"], 1)}))


pool_app = typer.Typer(help="Pools of retrains and shadow models: per-example evidence for "
                       "deletion requests.",
                       no_args_is_help=True)
app.add_typer(pool_app, name="pool")


@pool_app.command("build")
@one_line_errors
def pool_build(
    original: Annotated[str, typer.Option(
        help="The model the request is made of: members train with its architecture and "
             "recipe.")],
    data: Annotated[str, typer.Option(help="Dataset directory or s3:// URI.")],
    forget_ids: Annotated[str, typer.Option(
        help="Text or Parquet file of the request's training sample ids.")],
    out: Annotated[str, typer.Option(help="Pool directory (resumes an unfinished one).")],
    k: Annotated[int, typer.Option(min=2, help="Retrains, and as many models trained with "
                                               "the request.")] = 4,
    held: Annotated[int, typer.Option(min=1, help="Retrains kept out of every fit: the "
                                                  "control that must pass.")] = 2,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
) -> None:
    """Train 2k + held models for one deletion request (hours on a CPU for real sizes): what
    `oblivio evaluate --oracle-pool` judges a model against, image by image."""
    from oblivio.data.storage import check_output_dir
    from oblivio.evaluation.pool import build_pool, trained_like

    check_output_dir(out, [original, data, forget_ids], force=True)
    arch, recipe = trained_like(original)
    plan = build_pool(data, forget_ids, out, arch, recipe, k, held, device)
    print(json.dumps({"out": out, "members": 2 * k + held,
                      "seconds": round(sum(plan["seconds"].values()), 1)}))


@pool_app.command("shadows")
@one_line_errors
def pool_shadows(
    original: Annotated[str, typer.Option(
        help="The model whose training set the shadows split: they train with its "
             "architecture and recipe.")],
    data: Annotated[str, typer.Option(help="Dataset directory or s3:// URI.")],
    out: Annotated[str, typer.Option(help="Shadows directory (resumes unfinished ones).")],
    k: Annotated[int, typer.Option(min=4, help="Shadows, each on a random half (even: every "
                                               "image is in k/2).")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the halves and of the shadows.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
) -> None:
    """Train k half-data models once per training set: `oblivio evaluate --shadows` judges
    any later deletion request against them, and `forget --targets shadows` aims at them."""
    from oblivio.data.storage import check_output_dir
    from oblivio.evaluation.pool import trained_like
    from oblivio.evaluation.shadows import build_shadows

    check_output_dir(out, [original, data], force=True)
    arch, recipe = trained_like(original)
    plan = build_shadows(data, out, arch, recipe, k, seed, device)
    print(json.dumps({"out": out, "shadows": k,
                      "seconds": round(sum(plan["seconds"].values()), 1)}))
