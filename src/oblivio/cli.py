"""The ``oblivio`` command: one verb per user task, each a thin call into the library.

Bad input ends with one line on stderr (``error: ...``) and exit status 2.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from oblivio.errors import OblivioError


class OneLineGroup(TyperGroup):
    """Usage errors (a missing option, a value out of range) end as every other refusal does:
    one ``error:`` line and exit status 2, not a boxed page of help."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except TyperException as exc:  # typer's own click: a usage error
            print(f"error: {exc.format_message()}", file=sys.stderr)
            result = getattr(exc, "exit_code", 2)
            if not standalone_mode:
                raise
        except typer.Abort:
            print("error: interrupted", file=sys.stderr)
            result = 130
            if not standalone_mode:
                raise
        if standalone_mode:
            sys.exit(result if isinstance(result, int) else 0)
        return result


app = typer.Typer(help="Make image classifiers forget data without retraining from scratch.",
                  no_args_is_help=True, pretty_exceptions_enable=False, cls=OneLineGroup)
data_app = typer.Typer(help="Prepare datasets in oblivio's contract.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn bad input into one clear line on stderr and exit status 2: the library's own
    errors, and the file, network and MLflow errors it did not word itself (their first line).
    Anything else is a bug, and keeps its traceback."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for name, value in kwargs.items():  # a number option's NaN or infinity, at parse time
            if isinstance(value, float) and not math.isfinite(value):
                print(f"error: --{name.replace('_', '-')} must be a finite number, got {value}",
                      file=sys.stderr)
                raise typer.Exit(2)
        try:
            return fn(*args, **kwargs)
        except OblivioError as exc:
            print(f"error: {exc}", file=sys.stderr)
        except Exception as exc:
            if not (isinstance(exc, OSError) or type(exc).__module__.startswith("mlflow.")):
                raise
            text = str(exc).strip()
            print(f"error: {text.splitlines()[0] if text else type(exc).__name__}",
                  file=sys.stderr)
        raise typer.Exit(2)
    return wrapper


@data_app.command("fashion-mnist")
@one_line_errors
def data_fashion_mnist(
    out: Annotated[str, typer.Option(help="Output directory or s3:// URI.")],
    idx_dir: Annotated[str, typer.Option(help="Directory of the IDX files.")] =
        "/usr/share/datasets/fashion-mnist",
    holdout: Annotated[int, typer.Option(
        min=0, help="Training images to keep apart from every model, as the unseen images "
                    "methods tune towards (the test split then stays for evaluation "
                    "alone).")] = 0,
    force: Annotated[bool, typer.Option(
        help="Replace --out when it is a directory with content.")] = False,
) -> None:
    """Convert Fashion-MNIST's IDX files into train/test (and holdout) Parquet +
    classes.json."""
    from oblivio.data.fashion_mnist import convert
    from oblivio.data.storage import check_output_dir

    check_output_dir(out, [idx_dir], force)
    counts = convert(out, idx_dir, holdout)
    print(f"wrote {out}: " + ", ".join(f"{k} {v} rows" for k, v in counts.items()))


@data_app.command("check")
@one_line_errors
def data_check(
    data: Annotated[str, typer.Argument(help="Dataset directory or s3:// URI.")],
) -> None:
    """Decode and check every image, id and label once, and record it in checks.json
    (forget and evaluate run this themselves on a dataset not yet checked)."""
    from oblivio.data import open_dataset
    from oblivio.data.checks import check_dataset

    result = check_dataset(open_dataset(data))
    print(json.dumps({"data": data, **result}))


@app.command()
@one_line_errors
def train(
    data: Annotated[str, typer.Option(help="Dataset directory or s3:// URI.")],
    out: Annotated[str, typer.Option(help="Model directory to write.")],
    arch: Annotated[str, typer.Option(help="timm architecture name.")] = "resnet18",
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 8,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same weights).")] = 0,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 128,
    lr: Annotated[float | None, typer.Option(
        help="Peak learning rate (warm-up, then cosine decay); default 0.1 (SGD), 1e-3 for "
             "ViTs (AdamW).")] = None,
    exclude_classes: Annotated[str | None, typer.Option(
        help="Classes to leave out, e.g. 3,5 (the retrain oracle).")] = None,
    exclude_ids: Annotated[str | None, typer.Option(
        help="Text or Parquet file of sample ids to leave out.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    force: Annotated[bool, typer.Option(
        help="Replace --out when it is a directory with content.")] = False,
) -> None:
    """Train a classifier with the default recipe and write a model directory."""
    from oblivio.data.storage import check_output_dir
    from oblivio.training import recipe_for, train_to_dir

    check_output_dir(out, [data, exclude_ids], force)
    recipe = recipe_for(arch, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    metrics = train_to_dir(data, arch, out, recipe, exclude_classes, exclude_ids, device)
    print(json.dumps({"out": out, "test_acc": metrics["test_acc"],
                      "seconds": round(metrics["seconds"], 1), "epochs": epochs}))


ShadowsOption = Annotated[str | None, typer.Option(
    help="Deletion requests: the original's shadow models (`oblivio pool shadows`): match "
         "aims each image at them, and the evaluation judges the request against them (a "
         "gate).")]
ForgottenIds = Annotated[list[str] | None, typer.Option(
    metavar="FILE",
    help="Files of the training ids the model has already forgotten (repeat for several "
         "requests), when the ledger that honoured them is not at hand: a model records them "
         "by digest only.")]


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
    from oblivio.unlearn.forgotten import given_ids
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
        "epochs": epochs, "lr": lr,
        "fisher_samples": fisher_samples, "retain_batches": retain_batches, "rewind": rewind,
        "saliency": saliency, "seed": seed})
    with given_ids(forgotten_ids):
        result = chosen.run(model, data, out, classes, forget_ids, settings, device, True)
    if result.get("guard_stopped"):
        print(f"warning: {chosen.name} stopped after {len(result['halved_at'])} undone steps: "
              "even the smallest step raised the retain images' loss more than --retain-guard "
              "allows, so the images are only partly forgotten", file=sys.stderr)
    elif result.get("cap_hit"):
        cap = {"match": "--max-steps", "l2ul": "--max-epochs"}.get(chosen.name, "--epochs")
        print(f"warning: {chosen.name} stopped at its cap before reaching its target "
              f"(raise {cap})", file=sys.stderr)
    shown = {k: result[k] for k in ("method", "forget_classes", "forgotten_classes",
                                    "forget_ids_count", "alpha", "ratio", "rounds", "blocks",
                                    "validation",
                                    "steps", "cap_hit", "forget_acc", "auc_start",
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


pipeline_app = typer.Typer(help="The Kubeflow pipeline.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")


@pipeline_app.command("compile")
@one_line_errors
def pipeline_compile(
    out: Annotated[str, typer.Option(help="Folder for the compiled YAML.")] = "pipelines",
    image_digest: Annotated[str | None, typer.Option(
        help="sha256:... of the project image: the steps that run it name it by this digest "
             "instead of the version tag.")] = None,
    control_digest: Annotated[str | None, typer.Option(
        help="sha256:... of the control-plane image (the ledger's steps, the exit handler), "
             "likewise.")] = None,
) -> None:
    """Compile the pipelines to KFP IR YAML (upload it in the Kubeflow UI)."""
    from oblivio_pipeline.compile import compile_pipelines

    for path in compile_pipelines(out, image_digest, control_digest):
        print(f"wrote {path}")


KfpHost = Annotated[str, typer.Option(
    help="Kubeflow Pipelines API, e.g. http://ml-pipeline.kubeflow.svc.cluster.local:8888.")]
KfpNamespace = Annotated[str | None, typer.Option(
    help="Kubeflow profile namespace (multi-user Kubeflow): the pipeline, experiment and "
         "recurring run live there.")]
KfpTokenFile = Annotated[Path | None, typer.Option(
    help="File holding the token (the projected ServiceAccount token, audience "
         "pipelines.kubeflow.org); default $KF_PIPELINES_SA_TOKEN_PATH, or "
         "/var/run/secrets/kubeflow/pipelines/token where it exists.")]
KfpToken = Annotated[str | None, typer.Option(
    envvar="OBLIVIO_KFP_TOKEN", show_envvar=True,
    help="A bearer token (prefer the environment variable to the command line).")]
KfpExperiment = Annotated[str, typer.Option(help="Kubeflow experiment.")]
KfpJobName = Annotated[str, typer.Option(help="The recurring run's name.")]
KfpWait = Annotated[float, typer.Option(
    help="Minutes to wait for a batch in flight before the old schedule is deleted (one "
         "still running stays disabled, and a later call deletes it).")]


@pipeline_app.command("schedule")
@one_line_errors
def pipeline_schedule(
    host: KfpHost,
    cron: Annotated[str, typer.Option(
        help="Six fields, seconds first: '0 0 2 * * *' is every day at 02:00.")] =
        "0 0 2 * * *",
    experiment: KfpExperiment = "oblivio",
    namespace: KfpNamespace = None,
    token_file: KfpTokenFile = None,
    token: KfpToken = None,
    pipeline_name: Annotated[str, typer.Option(
        help="The pipeline's name in Kubeflow (unique within the namespace).")] =
        "oblivio-deletion-batch",
    job_name: KfpJobName = "oblivio-deletion-batch",
    wait_minutes: KfpWait = 30.0,
    param: Annotated[list[str] | None, typer.Option(
        help="A pipeline parameter, NAME=VALUE (repeatable), e.g. dataset_uri=s3://...")] = None,
    package: Annotated[Path | None, typer.Option(
        help="The compiled pipeline YAML to upload (default: the one installed with "
             "oblivio).")] = None,
    image: Annotated[str | None, typer.Option(
        help="Run the steps that use the project image in this one (repository:tag or "
             "repository@sha256:...) instead.")] = None,
    control_image: Annotated[str | None, typer.Option(
        help="Likewise for the control-plane image (the ledger's steps, the exit "
             "handler).")] = None,
) -> None:
    """Upload the deletion-batch pipeline (a new version when it exists) and schedule it as a
    recurring run (one at a time, no catch-up), replacing the previous schedule without
    killing a batch in flight."""
    from oblivio_pipeline.schedule import Target, schedule

    params = {}
    for item in param or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise OblivioError(f"--param {item!r}: expected NAME=VALUE")
        try:  # numbers, booleans, objects as the pipeline types them; anything else text
            params[name] = json.loads(value)
        except json.JSONDecodeError:
            params[name] = value
    if package is not None and not package.is_file():
        raise OblivioError(f"--package {package}: no such file")
    target = Target(host, namespace, token, token_file)
    print(json.dumps(schedule(target, cron, experiment, job_name, params, package,
                              pipeline_name, wait_s=wait_minutes * 60, image=image,
                              control_image=control_image)))


@pipeline_app.command("check")
@one_line_errors
def pipeline_check(
    host: KfpHost,
    namespace: KfpNamespace = None,
    token_file: KfpTokenFile = None,
    token: KfpToken = None,
    mlflow: Annotated[str | None, typer.Option(
        help="Also check the MLflow server at this URL answers its API.")] = None,
) -> None:
    """Check that Kubeflow Pipelines accepts the token in the namespace, and that MLflow
    answers (what the Helm chart's `helm test` runs)."""
    from oblivio_pipeline.schedule import Target, check

    print(json.dumps(check(Target(host, namespace, token, token_file), mlflow)))


@pipeline_app.command("unschedule")
@one_line_errors
def pipeline_unschedule(
    host: KfpHost,
    experiment: KfpExperiment = "oblivio",
    namespace: KfpNamespace = None,
    token_file: KfpTokenFile = None,
    token: KfpToken = None,
    job_name: KfpJobName = "oblivio-deletion-batch",
    wait_minutes: KfpWait = 30.0,
) -> None:
    """Take the deletion batch off its schedule (what the chart's uninstall runs): disable the
    recurring run, wait for a batch in flight, delete it."""
    from oblivio_pipeline.schedule import Target, unschedule

    print(json.dumps(unschedule(Target(host, namespace, token, token_file), experiment,
                                job_name, wait_s=wait_minutes * 60)))


@app.command()
@one_line_errors
def run(
    model_name: Annotated[str, typer.Option(help="Registered model name.")] =
        "fashion-classifier",
    forget_classes: Annotated[str | None, typer.Option(
        help="Classes to forget (default: the next class the champion still knows).")] = None,
    forget_ids: Annotated[str | None, typer.Option(
        help="A deletion request instead: text or Parquet file of training sample ids "
             "(the instance branch, --instance-method).")] = None,
    forgotten_ids: ForgottenIds = None,
    data: Annotated[str | None, typer.Option(
        help="Dataset (default: Fashion-MNIST, converted under the oblivio home).")] = None,
    epochs: Annotated[int, typer.Option(
        help="Epochs of the original model when it has to be trained first.")] = 1,
    class_method: Annotated[str, typer.Option(
        help="Classes: projection, or contrast (the better choice for a ViT).")] = "projection",
    instance_method: Annotated[str, typer.Option(
        help="Sample ids: match (behave like a retrain), relabel (mislabelled images: to the "
             "model's runner-up class, where a retrain puts them) or l2ul (push them off "
             "their labels).")] = "match",
    alpha_mode: Annotated[str, typer.Option(help="auto or fixed.")] = "auto",
    promote: Annotated[bool, typer.Option(help="Promote to champion when gates pass.")] = True,
    max_forget_acc: Annotated[float, typer.Option(help="Gate: forget accuracy.")] = 0.01,
    max_retain_drop: Annotated[float, typer.Option(help="Gate: retain drop.")] = 0.025,
    min_mia_efficacy: Annotated[float, typer.Option(help="Gate: MIA-efficacy.")] = 0.9,
    max_reestimated_forget_acc: Annotated[float, typer.Option(
        help="Gate: forget accuracy once batch norm is re-estimated on kept data.")] = 0.01,
    instance_max_test_drop: Annotated[float, typer.Option(
        help="Gate for sample ids: test accuracy drop.")] = 0.005,
    instance_auc_z: Annotated[float, typer.Option(
        help="Gate for sample ids: spreads the loss attack's AUC may lie from 0.5.")] = 2.576,
    instance_auc_one_sided: Annotated[bool, typer.Option(
        help="Gate for sample ids: fail only a result still familiar (mislabelled or poisoned "
             "images, which a retrain makes stranger than unseen ones).")] = False,
    shadows: ShadowsOption = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    shards: Annotated[int, typer.Option(
        help="Tasks that capture and the evaluation's training-split pass each spread over "
             "(the same result for any count).")] = 1,
) -> None:
    """Run the unlearning pipeline locally (kfp.local) against the local MLflow."""
    from oblivio.unlearn.forgotten import given_ids
    from oblivio_pipeline.local import run_local

    with given_ids(forgotten_ids):
        result = run_local(model_name, forget_classes, data, epochs=epochs, device=device,
                           forget_ids=forget_ids, class_method=class_method,
                           instance_method=instance_method, alpha_mode=alpha_mode,
                           promote=promote, max_forget_acc=max_forget_acc,
                           max_retain_drop=max_retain_drop, min_mia_efficacy=min_mia_efficacy,
                           max_reestimated_forget_acc=max_reestimated_forget_acc,
                           instance_max_test_drop=instance_max_test_drop,
                           instance_auc_z=instance_auc_z,
                           instance_auc_one_sided=instance_auc_one_sided, shards=shards,
                           shadows_uri=shadows or "")
    print(result["report"])
    print(f"forgot {result['forgot']}")
    print_lineage(model_name)
    if promote and result["gate"] != "passed":  # a monitor reads the exit status
        raise OblivioError(f"version {result['version']} was registered but not promoted: "
                           f"its gates {result['gate']}")


def print_lineage(name: str) -> None:
    from oblivio.tracking.registry import lineage as rows_of

    rows = rows_of(name)  # all of it, before the first line is printed
    print(f"{'version':>7}  {'parent':>6}  {'method':<10} {'forget':<8} {'forgotten':<10} "
          f"{'retain':>7} {'forget':>7} {'mia':>6}  aliases / gate")
    for r in rows:
        m = r["metrics"]
        forget_acc = m.get("forget_test_acc", m.get("forget_train_acc"))
        cells = [f"{v:.4f}" if v is not None else "-" for v in (
            m.get("retain_test_acc"), forget_acc, m.get("mia_efficacy_confidence"))]
        print(f"{r['version']:>7}  {r['parent'] or '-':>6}  {r['method']:<10} "
              f"{r['forget'] or '-':<8} {r['forgotten_classes'] or '-':<10} {cells[0]:>7} "
              f"{cells[1]:>7} {cells[2]:>6}  {','.join(r['aliases']) or '-'} / {r['gate']}")


@app.command()
@one_line_errors
def lineage(name: Annotated[str, typer.Argument(help="Registered model name.")]) -> None:
    """The chain from the original to every version: what each forgot, metrics, aliases."""
    from oblivio.tracking.store import connect

    connect(create=False)
    print_lineage(name)


@app.command()
@one_line_errors
def promote(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="Version to make champion.")],
    max_forget_acc: Annotated[float, typer.Option(help="Gate: forget accuracy.")] = 0.01,
    max_retain_drop: Annotated[float, typer.Option(help="Gate: retain drop.")] = 0.025,
    min_mia_efficacy: Annotated[float, typer.Option(help="Gate: MIA-efficacy.")] = 0.9,
    max_reestimated_forget_acc: Annotated[float, typer.Option(
        help="Gate: forget accuracy once batch norm is re-estimated on kept data.")] = 0.01,
    instance_max_test_drop: Annotated[float, typer.Option(
        help="Gate for sample ids: test accuracy drop.")] = 0.005,
    instance_auc_z: Annotated[float, typer.Option(
        help="Gate for sample ids: spreads the loss attack's AUC may lie from 0.5.")] = 2.576,
    instance_auc_one_sided: Annotated[bool, typer.Option(
        help="Gate for sample ids: fail only a result still familiar (mislabelled or poisoned "
             "images, which a retrain makes stranger than unseen ones).")] = False,
) -> None:
    """Make VERSION the champion if it passes the gates and honours every deletion the
    current champion honours (also how to roll back)."""
    from oblivio.deletion.promotion import promote as run_promote
    from oblivio.evaluation.gates import Gates
    from oblivio.tracking.store import connect

    gates = Gates(max_forget_acc=max_forget_acc, max_retain_drop=max_retain_drop,
                  min_mia_efficacy=min_mia_efficacy,
                  max_reestimated_forget_acc=max_reestimated_forget_acc,
                  instance_max_test_drop=instance_max_test_drop, instance_auc_z=instance_auc_z,
                  instance_auc_one_sided=instance_auc_one_sided)
    connect()
    print(run_promote(name, version, gates))



requests_app = typer.Typer(help="Deletion requests: intake and the ledger.", no_args_is_help=True)
app.add_typer(requests_app, name="requests")
batch_app = typer.Typer(help="Deletion batches: honour what is pending.", no_args_is_help=True)
app.add_typer(batch_app, name="batch")
ModelName = Annotated[str, typer.Option(help="Registered model name.")]
DataOption = Annotated[str | None, typer.Option(
    help="Dataset (default: Fashion-MNIST, converted under the oblivio home).")]


def _local_model(name: str, data: str | None, epochs: int = 1, device: str = "auto",
                 seed: int = 0) -> str:
    """The dataset, with ``name`` registered: on a fresh machine the original is trained on
    Fashion-MNIST and registered first, as ``oblivio run`` does."""
    from pathlib import Path

    from oblivio.home import oblivio_home
    from oblivio_pipeline.local import ensure_dataset, ensure_registered

    dataset = Path(data) if data else ensure_dataset(oblivio_home(),
                                                     "/usr/share/datasets/fashion-mnist")
    ensure_registered(name, dataset, oblivio_home(), "resnet18", epochs, device, seed)
    return str(dataset)


@requests_app.command("submit")
@one_line_errors
def requests_submit(
    ids: Annotated[str | None, typer.Option(
        help="Text or Parquet file (or s3:// URI) of training sample ids to delete.")] = None,
    classes: Annotated[str | None, typer.Option(
        help="Classes to forget: indices or names, e.g. 7,Sneaker; 'next': the next class the "
             "champion still knows.")] = None,
    ticket: Annotated[str | None, typer.Option(
        help="Your reference, e.g. GDPR-2026-114: one request per ticket and model.")] = None,
    deadline: Annotated[str | None, typer.Option(help="Honour by (YYYY-MM-DD).")] = None,
    model_name: ModelName = "fashion-classifier",
    data: DataOption = None,
) -> None:
    """Check a request against the champion and the dataset, record it as pending, print its
    id. The same request again (its ticket, or the same items) prints the recorded one.
    Unknown model, unknown, test-split or duplicate ids, classes already forgotten, items of
    another request: one error line, nothing recorded."""
    from datetime import date

    from oblivio.deletion.intake import submit_request
    from oblivio.home import oblivio_home
    from oblivio.ledger.store import Ledger, check_ticket
    from oblivio_pipeline.local import ensure_dataset

    try:
        due = date.fromisoformat(deadline) if deadline else None
    except ValueError:
        raise OblivioError(f"--deadline {deadline!r} is not a date (YYYY-MM-DD)") from None
    check_ticket(ticket)
    ledger = Ledger()
    if (ids is None) == (classes is None):
        raise OblivioError("a request names sample ids (--ids) or classes (--classes), one of them")
    dataset = data or str(ensure_dataset(oblivio_home(), "/usr/share/datasets/fashion-mnist"))
    if classes == "next":
        from oblivio_pipeline.local import next_class

        classes = next_class(model_name)
    request, new = submit_request(ledger, model_name, dataset, ids, classes, ticket, due)
    if not new:
        print(f"already recorded: {request.id} ({request.state})", file=sys.stderr)
    elif request.state == "honoured":
        print(f"honoured at once: version {request.version} has already forgotten it",
              file=sys.stderr)
    print(request.id)


@requests_app.command("list")
@one_line_errors
def requests_list(
    state: Annotated[str | None, typer.Option(
        help="pending, claimed, honoured or failed.")] = None,
    model_name: Annotated[str | None, typer.Option(help="Only this model's.")] = None,
    overdue: Annotated[bool, typer.Option(
        "--overdue", help="Only requests past their deadline and not honoured; exit 1 when "
                          "there is any (for a monitor).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
) -> None:
    """The ledger's requests, oldest first, with their deadlines."""
    from datetime import date

    from oblivio.ledger.store import Ledger

    today = date.today()
    found = Ledger().find(state=state, model_name=model_name,
                          overdue=today if overdue else None)
    if as_json:
        for r in found:
            print(json.dumps(r.as_dict() | {"overdue": r.overdue(today)}))
    else:
        print(f"{'request':<16} {'model':<20} {'kind':<7} {'count':>6} {'state':<9} "
              f"{'tries':>5} {'ticket':<16} {'deadline':<11} {'version':>7}  last error")
        for r in found:
            due = r.deadline.isoformat() + ("!" if r.overdue(today) else "") if r.deadline else "-"
            print(f"{r.id:<16} {r.model_name:<20} {r.kind:<7} {r.count:>6} {r.state:<9} "
                  f"{r.attempts:>5} {r.ticket or '-':<16} {due:<11} {r.version or '-':>7}  "
                  f"{(r.last_error or '-')[:80]}")
    if overdue and found:
        print(f"{len(found)} request(s) past their deadline", file=sys.stderr)
        raise typer.Exit(1)


ledger_app = typer.Typer(help="The ledger's database.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")


@ledger_app.command("upgrade")
@one_line_errors
def ledger_upgrade() -> None:
    """Migrate the ledger (OBLIVIO_LEDGER_ADMIN_URL, the schema owner's, else
    OBLIVIO_LEDGER_URL, else the oblivio home's) to this oblivio's schema; a ledger already
    there is left as it is."""
    import os

    from oblivio.ledger.store import ADMIN_ENV, Ledger

    before, after = Ledger(os.environ.get(ADMIN_ENV), migrate=True).upgrade()
    print(f"ledger at schema revision {after}" + (f" (was {before})"
                                                   if before != after else " already"))


@batch_app.command("run")
@one_line_errors
def batch_run(
    model_name: ModelName = "fashion-classifier",
    data: DataOption = None,
    lease_minutes: Annotated[int, typer.Option(
        help="How long the claim holds before another run may take the batch over.")] = 360,
    max_attempts: Annotated[int, typer.Option(
        help="Attempts before a request is marked failed.")] = 3,
    epochs: Annotated[int, typer.Option(
        help="Epochs of the original model when it has to be trained first.")] = 1,
    shadows: ShadowsOption = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
) -> None:
    """Honour every pending request once: claim them, forget the classes then the images from
    the champion (the pipeline, locally), promote, mark them honoured. Nothing pending: no
    run, exit 0."""
    from datetime import timedelta

    from oblivio.ledger.store import Ledger
    from oblivio_pipeline.batch import run_batch

    if lease_minutes < 1 or max_attempts < 1:
        raise OblivioError("--lease-minutes and --max-attempts must be at least 1")
    ledger = Ledger()
    dataset = _local_model(model_name, data, epochs, device)
    result = run_batch(model_name, dataset, timedelta(minutes=lease_minutes), max_attempts,
                       ledger, device=device, shadows_uri=shadows or "")
    if result.batch is None:
        held = ledger.held_batches(model_name)
        print("nothing pending" + "".join(
            f"; {b['id']} is held by {b['owner']} until {b['lease_until']:%Y-%m-%d %H:%M} UTC"
            for b in held))
        return
    for report in result.reports:
        print(report)
    done = ", ".join(f"{kind} by version {v}" for kind, v in result.honoured.items())
    print(f"{result.batch}: honoured {len(result.requests)} request(s): {done}")
    print_lineage(model_name)


@app.command()
@one_line_errors
def demo(
    seed: Annotated[int, typer.Option(
        help="Seeds the image draw (and the original, on a fresh home).")] = 0,
    images: Annotated[int, typer.Option(help="Training images the deletion request names.")] = 32,
    model_name: ModelName = "fashion-classifier",
    data: DataOption = None,
    epochs: Annotated[int, typer.Option(
        help="Epochs of the original model when it has to be trained first.")] = 1,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
) -> None:
    """What make demo runs: request the next class the champion knows and a seeded draw of
    training images, honour both in one deletion batch, print who honours what, the lineage
    and the audit; then `audit verify`, a champion moved by hand that verify catches, and
    promote putting it right. Either request not honoured: one error line, exit 2."""
    from oblivio.deletion.audit import audit as run_audit
    from oblivio.deletion.audit import render
    from oblivio.ledger.store import Ledger
    from oblivio_pipeline.demo import run_demo

    if images < 1:
        raise OblivioError("--images must be at least 1")
    dataset = _local_model(model_name, data, epochs, device, seed)
    result = run_demo(model_name, dataset, seed, images, device=device)
    print_lineage(model_name)
    for kind in ("classes", "ids"):
        print(render(run_audit(Ledger(), model_name, ticket=result.tickets[kind])))
    for kind in ("classes", "ids"):
        print(f"demo: {result.named[kind]} (request {result.requests[kind]}, ticket "
              f"{result.tickets[kind]}) honoured by version {result.honoured[kind]}")
    from oblivio_pipeline.demo import tamper_drill

    for line in tamper_drill(model_name):
        print(line)


@app.command()
@one_line_errors
def purge(
    model_name: ModelName = "fashion-classifier",
    dry_run: Annotated[bool, typer.Option(help="Tag and list, delete nothing.")] = False,
) -> None:
    """Tag every version that still knows data of an honoured request and delete its weights
    (registry entries and lineage stay, for the audit); erase finished batches' ids files and,
    with version 1, this machine's training folder of the original. Each erasure is a receipt
    in the ledger's history."""
    from oblivio.deletion.purge import purge as run_purge
    from oblivio.ledger.store import Ledger

    rows = run_purge(Ledger(), model_name, dry_run)
    for row in rows:
        state = ("would delete" if dry_run and not row["purged"] else
                 f"purged {row['purged']}")
        print(f"version {row['version']:>4}  {state}  knows {', '.join(row['knows'])}")
    if not rows:
        print("every version honours every honoured request")


audit_app = typer.Typer(help="The auditor's questions.", invoke_without_command=True)
app.add_typer(audit_app, name="audit")


@audit_app.callback()
@one_line_errors
def audit(
    ctx: typer.Context,
    ticket: Annotated[str | None, typer.Option(help="A request's ticket.")] = None,
    sample_id: Annotated[str | None, typer.Option(help="A training sample id.")] = None,
    class_: Annotated[str | None, typer.Option("--class", help="A class index or name.")] = None,
    model_name: ModelName = "fashion-classifier",
    as_json: Annotated[bool, typer.Option("--json", help="JSON.")] = False,
    report: Annotated[str | None, typer.Option(
        help="With --ticket: write report.json and report.html, for the auditor's file, "
             "into this folder.")] = None,
) -> None:
    """Which versions honour a request (by ticket, image or class), since when, whether the
    champion does, and the evidence of each; exit 1 when the champion does not honour an
    honoured request. `oblivio audit verify` checks the whole record."""
    if ctx.invoked_subcommand is not None:
        return
    if report is not None:
        if ticket is None:
            raise OblivioError("--report needs --ticket: a report is of one request")
        from oblivio.deletion import request_report
        from oblivio.ledger.store import Ledger

        built = request_report.build(Ledger(), model_name, ticket)
        for path in request_report.write(built, report):
            print(path)
        if not built["verification"]["ok"] or any(
                e.get("champion_honours") is False for e in built["requests"]):
            raise typer.Exit(1)
        return
    from oblivio.deletion.audit import audit as run_audit
    from oblivio.deletion.audit import render
    from oblivio.ledger.store import Ledger

    index = None
    if class_ is not None:
        from oblivio.tracking.registry import CHAMPION, version_config

        if class_.isdigit():
            index = int(class_)
        else:  # a name: the champion's own class names say which index
            names = version_config(f"models:/{model_name}@{CHAMPION}")["class_names"]
            if class_ not in names:
                raise OblivioError(f"unknown class {class_!r}; classes: {', '.join(names)}")
            index = names.index(class_)
    entries = run_audit(Ledger(), model_name, ticket=ticket, sample_id=sample_id,
                        class_index=index)
    print(json.dumps(entries, indent=1, default=str) if as_json else render(entries))
    if any(e.get("champion_honours") is False for e in entries):
        raise typer.Exit(1)


@audit_app.command("verify")
@one_line_errors
def audit_verify(
    model_name: ModelName = "fashion-classifier",
    weights: Annotated[bool, typer.Option(
        help="Hash the champion's weights as the registry serves them.")] = True,
    pushgateway: Annotated[str | None, typer.Option(
        help="Prometheus Pushgateway URL: push oblivio_audit_verify_breaks there.")] = None,
) -> None:
    """Recompute the history's hash chain and check the ledger's rows and the registry
    (champion, its weights, the lineage tags of every version the history names) against it.
    Exit 1 on any break, one line each."""
    from oblivio.deletion.verify import push_metric, verify
    from oblivio.ledger.store import Ledger

    verdict = verify(Ledger(), model_name, weights)
    if pushgateway:
        push_metric(pushgateway, model_name, verdict)
    for fact in verdict.facts:
        print(f"ok: {fact}")
    for line in verdict.breaks:
        print(f"BREAK: {line}")
    if not verdict.ok:
        print(f"audit verify: {len(verdict.breaks)} break(s)", file=sys.stderr)
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
