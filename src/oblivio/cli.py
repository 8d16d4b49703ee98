"""The ``oblivio`` command: one verb per user task, each a thin call into the library.

Bad input ends with one line on stderr (``error: ...``) and exit status 2.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from oblivio.errors import OblivioError

app = typer.Typer(help="Make image classifiers forget data without retraining from scratch.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Prepare datasets in oblivio's contract.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn OblivioError into one clear line on stderr and exit status 2."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OblivioError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
    return wrapper


@data_app.command("fashion-mnist")
@one_line_errors
def data_fashion_mnist(
    out: Annotated[str, typer.Option(help="Output directory or s3:// URI.")],
    idx_dir: Annotated[str, typer.Option(help="Directory of the IDX files.")] =
        "/usr/share/datasets/fashion-mnist",
) -> None:
    """Convert Fashion-MNIST's IDX files into train/test Parquet + classes.json."""
    from oblivio.data.fashion_mnist import convert

    counts = convert(out, idx_dir)
    print(f"wrote {out}: " + ", ".join(f"{k} {v} rows" for k, v in counts.items()))


@app.command()
@one_line_errors
def train(
    data: Annotated[str, typer.Option(help="Dataset directory or s3:// URI.")],
    out: Annotated[str, typer.Option(help="Model directory to write.")],
    arch: Annotated[str, typer.Option(help="timm architecture name.")] = "resnet18",
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 8,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same weights).")] = 0,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 128,
    lr: Annotated[float, typer.Option(
        help="Peak learning rate (warm-up, then cosine decay).")] = 0.1,
    exclude_classes: Annotated[str | None, typer.Option(
        help="Classes to leave out, e.g. 3,5 (the retrain oracle).")] = None,
    exclude_ids: Annotated[str | None, typer.Option(
        help="Text or Parquet file of sample ids to leave out.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
) -> None:
    """Train a classifier with the default recipe and write a model directory."""
    from oblivio.training import Recipe, train_to_dir

    recipe = Recipe(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    metrics = train_to_dir(data, arch, out, recipe, exclude_classes, exclude_ids, device)
    print(json.dumps({"out": out, "test_acc": metrics["test_acc"],
                      "seconds": round(metrics["seconds"], 1), "epochs": epochs}))


@app.command()
@one_line_errors
def forget(
    model: Annotated[str, typer.Option(help="Model directory (or s3:// URI) to unlearn from.")],
    data: Annotated[str, typer.Option(help="Dataset the model was trained on.")],
    classes: Annotated[str, typer.Option(help="Classes to forget: indices or names, e.g. 7,2.")],
    out: Annotated[str, typer.Option(help="Model directory to write.")],
    alpha: Annotated[str, typer.Option(help="'auto': choose (alpha_r, alpha_f) on a validation "
                                             "split of the training data.")] = "auto",
    alpha_r: Annotated[float | None, typer.Option(help="Fixed retain alpha.")] = None,
    alpha_f: Annotated[float | None, typer.Option(help="Fixed forget alpha.")] = None,
    retain_per_class: Annotated[int, typer.Option(help="Retain samples per kept class.")] = 100,
    forget_samples: Annotated[int, typer.Option(help="Samples of the forget class(es).")] = 1000,
    val_per_class: Annotated[int, typer.Option(help="Validation samples per kept class.")] = 50,
    val_forget_samples: Annotated[int, typer.Option(
        help="Validation samples of the forget class(es).")] = 250,
    seed: Annotated[int, typer.Option(help="Seed of the sample draws.")] = 0,
    forget_target: Annotated[float, typer.Option(
        help="With --alpha auto: the validation forget accuracy a pair must reach; among those, "
             "the best retain accuracy wins.")] = 0.01,
    forget_margin: Annotated[float, typer.Option(
        help="With --alpha auto: factor on the chosen alpha_f, because validation images come "
             "from the training split and forget more readily than unseen ones.")] = 3 ** 0.5,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
) -> None:
    """Forget whole classes, training-free (activation-subspace weight projection)."""
    from oblivio.unlearn.class_forgetting import forget_classes

    if (alpha_r is None) != (alpha_f is None):
        raise OblivioError("give both --alpha-r and --alpha-f, or neither (--alpha auto)")
    if alpha_r is None and alpha != "auto":
        raise OblivioError(f"--alpha takes 'auto', got {alpha!r}; fix a pair with "
                           "--alpha-r and --alpha-f")
    chosen = "auto" if alpha_r is None else (alpha_r, alpha_f)
    result = forget_classes(model, data, classes, out, chosen, retain_per_class,
                            forget_samples, val_per_class, seed, device,
                            forget_target=forget_target, forget_margin=forget_margin,
                            val_forget_samples=val_forget_samples)
    print(json.dumps({"out": out, "forgotten_classes": result["forgotten_classes"],
                      "alpha": result["alpha"], "validation": result["validation"],
                      "seconds": {k: round(v, 2) for k, v in result["seconds"].items()}}))


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
    svc_samples: Annotated[int, typer.Option(
        help="Per-side samples of the SVC attacks (0: all of the test split).")] = 5000,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
) -> None:
    """Accuracy, membership-inference attacks and a linear probe: report.json/.md/.html."""
    from oblivio.evaluation.evaluate import evaluate as run
    from oblivio.evaluation.report import markdown

    report = run(model, data, out, forget_classes, forget_ids, original, oracle, device, seed,
                 svc_samples or None)
    print(markdown(report), end="")
    print(json.dumps({"out": out, "seconds": round(report["seconds"], 1)}))


pipeline_app = typer.Typer(help="The Kubeflow pipeline.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")


@pipeline_app.command("compile")
@one_line_errors
def pipeline_compile(
    out: Annotated[str, typer.Option(help="Folder for the compiled YAML.")] = "pipelines",
) -> None:
    """Compile the pipelines to KFP IR YAML (upload it in the Kubeflow UI)."""
    from oblivio_pipeline.compile import compile_pipelines

    for path in compile_pipelines(out):
        print(f"wrote {path}")


@app.command()
@one_line_errors
def run(
    model_name: Annotated[str, typer.Option(help="Registered model name.")] =
        "fashion-classifier",
    forget_classes: Annotated[str | None, typer.Option(
        help="Classes to forget (default: the next class the champion still knows).")] = None,
    data: Annotated[str | None, typer.Option(
        help="Dataset (default: Fashion-MNIST, converted under the oblivio home).")] = None,
    epochs: Annotated[int, typer.Option(
        help="Epochs of the original model when it has to be trained first.")] = 1,
    alpha_mode: Annotated[str, typer.Option(help="auto or fixed.")] = "auto",
    promote: Annotated[bool, typer.Option(help="Promote to champion when gates pass.")] = True,
    max_forget_acc: Annotated[float, typer.Option(help="Gate: forget accuracy.")] = 0.01,
    max_retain_drop: Annotated[float, typer.Option(help="Gate: retain drop.")] = 0.025,
    min_mia_efficacy: Annotated[float, typer.Option(help="Gate: MIA-efficacy.")] = 0.9,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
) -> None:
    """Run the class-forgetting pipeline locally (kfp.local) against the local MLflow."""
    from oblivio_pipeline.local import run_local

    result = run_local(model_name, forget_classes, data, epochs=epochs, device=device,
                       alpha_mode=alpha_mode, promote=promote, max_forget_acc=max_forget_acc,
                       max_retain_drop=max_retain_drop, min_mia_efficacy=min_mia_efficacy)
    print(result["report"])
    print(f"forgot class(es) {result['forget_classes']}")
    print_lineage(model_name)


def print_lineage(name: str) -> None:
    from oblivio.tracking.registry import lineage as rows_of

    print(f"{'version':>7}  {'parent':>6}  {'method':<10} {'forget':<8} {'forgotten':<10} "
          f"{'retain':>7} {'forget':>7} {'mia':>6}  aliases / gate")
    for r in rows_of(name):
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

    connect()
    print_lineage(name)


@app.command()
@one_line_errors
def promote(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="Version to make champion.")],
    max_forget_acc: Annotated[float, typer.Option(help="Gate: forget accuracy.")] = 0.01,
    max_retain_drop: Annotated[float, typer.Option(help="Gate: retain drop.")] = 0.025,
    min_mia_efficacy: Annotated[float, typer.Option(help="Gate: MIA-efficacy.")] = 0.9,
) -> None:
    """Make VERSION the champion if it passes the gates and honours every deletion the
    current champion honours (also how to roll back)."""
    from oblivio.tracking.promotion import Gates
    from oblivio.tracking.promotion import promote as run_promote
    from oblivio.tracking.store import connect

    connect()
    print(run_promote(name, version, Gates(max_forget_acc, max_retain_drop, min_mia_efficacy)))


if __name__ == "__main__":
    app()
