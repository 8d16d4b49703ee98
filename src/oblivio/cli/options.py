"""Options and helpers several verb groups share: the model name, the dataset, the shadows,
the ids a model already forgot, the local original, the lineage table."""

from __future__ import annotations

from typing import Annotated

import typer

ShadowsOption = Annotated[str | None, typer.Option(
    help="Deletion requests: the original's shadow models (`oblivio pool shadows`): match "
         "aims each image at them, and the evaluation judges the request against them (a "
         "gate).")]
ForgottenIds = Annotated[list[str] | None, typer.Option(
    metavar="FILE",
    help="Files of the training ids the model has already forgotten (repeat for several "
         "requests), when the ledger that honoured them is not at hand: a model records them "
         "by digest only.")]

ModelName = Annotated[str, typer.Option(help="Registered model name.")]
DataOption = Annotated[str | None, typer.Option(
    help="Dataset (default: Fashion-MNIST, converted under the oblivio home).")]


MaxForgetAcc = Annotated[float, typer.Option(help="Gate: forget accuracy.")]
MaxRetainDrop = Annotated[float, typer.Option(help="Gate: retain drop.")]
MinMiaEfficacy = Annotated[float, typer.Option(help="Gate: MIA-efficacy.")]
MaxReestimatedForgetAcc = Annotated[float, typer.Option(
    help="Gate: forget accuracy once batch norm is re-estimated on kept data.")]
InstanceMaxTestDrop = Annotated[float, typer.Option(
    help="Gate for sample ids: test accuracy drop.")]
InstanceAucZ = Annotated[float, typer.Option(
    help="Gate for sample ids: spreads the loss attack's AUC may lie from 0.5.")]
InstanceMaxSeconds = Annotated[float, typer.Option(
    help="Sample ids: wall-clock budget on the method's steps (0: none); the step under way "
         "when it runs out is the last, the version records it, the gates judge the result.")]
InstanceAucOneSided = Annotated[bool, typer.Option(
    help="Gate for sample ids: fail only a result still familiar (mislabelled or poisoned "
         "images, which a retrain makes stranger than unseen ones).")]


def local_model(name: str, data: str | None, epochs: int = 1, device: str = "auto",
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
