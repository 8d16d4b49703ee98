"""Data and models: `oblivio data fashion-mnist`, `data check`, `train`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from oblivio.cli.app import app, one_line_errors

data_app = typer.Typer(help="Prepare datasets in oblivio's contract.", no_args_is_help=True)
app.add_typer(data_app, name="data")


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
