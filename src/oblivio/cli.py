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
                            forget_target=forget_target,
                            val_forget_samples=val_forget_samples)
    print(json.dumps({"out": out, "forgotten_classes": result["forgotten_classes"],
                      "alpha": result["alpha"], "validation": result["validation"],
                      "seconds": {k: round(v, 2) for k, v in result["seconds"].items()}}))


if __name__ == "__main__":
    app()
