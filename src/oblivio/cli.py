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
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 4,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same weights).")] = 0,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 128,
    lr: Annotated[float, typer.Option(help="Peak learning rate (warm-up, then cosine decay).")] = 0.1,
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


if __name__ == "__main__":
    app()
