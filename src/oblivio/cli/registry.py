"""The model registry: `oblivio lineage`, `promote`."""

from __future__ import annotations

from typing import Annotated

import typer

from oblivio.cli.app import app, one_line_errors
from oblivio.cli.options import (
    InstanceAucOneSided,
    InstanceAucZ,
    InstanceMaxTestDrop,
    MaxForgetAcc,
    MaxReestimatedForgetAcc,
    MaxRetainDrop,
    MinMiaEfficacy,
    print_lineage,
)


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
    max_forget_acc: MaxForgetAcc = 0.01,
    max_retain_drop: MaxRetainDrop = 0.025,
    min_mia_efficacy: MinMiaEfficacy = 0.9,
    max_reestimated_forget_acc: MaxReestimatedForgetAcc = 0.01,
    instance_max_test_drop: InstanceMaxTestDrop = 0.005,
    instance_auc_z: InstanceAucZ = 2.576,
    instance_auc_one_sided: InstanceAucOneSided = False,
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
