"""The Kubeflow pipeline: `oblivio pipeline compile | schedule | check | unschedule`, and `run`
(the pipeline on this machine)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from oblivio.cli.app import app, one_line_errors
from oblivio.cli.options import (
    ForgottenIds,
    InstanceAucOneSided,
    InstanceAucZ,
    InstanceMaxSeconds,
    InstanceMaxTestDrop,
    MaxForgetAcc,
    MaxReestimatedForgetAcc,
    MaxRetainDrop,
    MinMiaEfficacy,
    ShadowsOption,
    print_lineage,
)
from oblivio.errors import OblivioError

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
    max_forget_acc: MaxForgetAcc = 0.01,
    max_retain_drop: MaxRetainDrop = 0.025,
    min_mia_efficacy: MinMiaEfficacy = 0.9,
    max_reestimated_forget_acc: MaxReestimatedForgetAcc = 0.01,
    instance_max_test_drop: InstanceMaxTestDrop = 0.005,
    instance_auc_z: InstanceAucZ = 2.576,
    instance_auc_one_sided: InstanceAucOneSided = False,
    instance_max_seconds: InstanceMaxSeconds = 0.0,
    shadows: ShadowsOption = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    shards: Annotated[int, typer.Option(
        help="Tasks that capture and the evaluation's training-split pass each spread over "
             "(the same result for any count).")] = 1,
) -> None:
    """Run the unlearning pipeline locally (kfp.local) against the local MLflow."""
    from oblivio.models.forgotten import given_ids
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
                           instance_auc_one_sided=instance_auc_one_sided,
                           instance_max_seconds=instance_max_seconds, shards=shards,
                           shadows_uri=shadows or "")
    print(result["report"])
    print(f"forgot {result['forgot']}")
    print_lineage(model_name)
    if promote and result["gate"] != "passed":  # a monitor reads the exit status
        raise OblivioError(f"version {result['version']} was registered but not promoted: "
                           f"its gates {result['gate']}")
