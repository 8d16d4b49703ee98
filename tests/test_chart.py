"""The Helm chart (charts/oblivio), as a platform team installs it: `helm lint` and `helm
template` with the default and with every option set, each rendered manifest validated offline
against the Kubernetes schemas (kubernetes-validate, strict), a values typo rejected by the
strict schema, and the chart's image and schedule parameters checked against the compiled
pipeline. No cluster runs here: nothing is installed, only rendered and validated."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from kubernetes_validate.utils import validate

from oblivio_pipeline import IMAGE

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "oblivio"
PIPELINE = ROOT / "pipelines" / "oblivio_deletion_batch" / "pipeline.yaml"
KUBERNETES = "1.33.0"
DIGEST = "sha256:" + "ab" * 32
FULL = {
    "image": {"digest": DIGEST},
    "imagePullSecrets": [{"name": "ghcr"}],
    "credentials": {"create": True, "values": {
        "mlflowTrackingUri": "http://mlflow:5000", "ledgerUrl": "postgresql+psycopg://l/l",
        "awsAccessKeyId": "id", "awsSecretAccessKey": "key",
        "awsEndpointUrl": "http://minio:9000", "mlflowBackendStoreUri": "postgresql://m/m"}},
    "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/o"}},
    "kubeflow": {"namespace": "team-a"},
    "schedule": {"cron": "0 30 1 * * *", "parameters": {
        "gpu_count": "2", "node_selector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }},
    "mlflow": {"enabled": True},
    "nodeSelector": {"kubernetes.io/arch": "amd64"},
    "tolerations": [{"key": "batch", "operator": "Exists"}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}]}}},
}


@pytest.fixture(scope="module")
def helm() -> str:
    """`make test` fetches helm into .tools/ (OBLIVIO_HELM); elsewhere one on PATH, else skip."""
    found = os.environ.get("OBLIVIO_HELM") or shutil.which("helm")
    if found and Path(found).exists():
        return str(Path(found).resolve())
    if os.environ.get("OBLIVIO_REQUIRE_POSTGRES"):  # under `make test`: it must be there
        pytest.fail("helm missing: `make test` fetches it (make helm)")
    pytest.skip("helm is not installed (make helm fetches it)")


def run_helm(helm: str, *args: str, values: dict | None = None,
             tmp_path: Path | None = None) -> subprocess.CompletedProcess:
    extra = []
    if values is not None:
        path = tmp_path / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        extra = ["-f", str(path)]
    return subprocess.run([helm, *args, str(CHART), *extra], capture_output=True, text=True,
                          timeout=120)


def rendered(helm: str, values: dict, tmp_path: Path) -> list[dict]:
    result = run_helm(helm, "template", "release", values=values, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def by_kind(docs: list[dict]) -> dict[str, dict]:
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


@pytest.mark.parametrize("name", ["default", "full"])
def test_lints_renders_and_validates(helm: str, tmp_path: Path, name: str) -> None:
    values = {"credentials": {"existingSecret": "oblivio-prod"}} if name == "default" else FULL
    lint = run_helm(helm, "lint", "--strict", values=values, tmp_path=tmp_path)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    docs = rendered(helm, values, tmp_path)
    for doc in docs:
        validate(doc, KUBERNETES, strict=True)  # raises on any schema violation
    kinds = sorted(by_kind(docs))
    expected = ["ConfigMap/release-oblivio-pipeline", "Job/release-oblivio-schedule",
                "Role/release-oblivio", "RoleBinding/release-oblivio",
                "ServiceAccount/release-oblivio"]
    if name == "full":
        expected += ["Deployment/release-oblivio-mlflow", "Secret/oblivio-credentials",
                     "Service/release-oblivio-mlflow"]
    assert kinds == sorted(expected)


def test_every_workload_takes_the_scheduling_and_security_values(helm: str,
                                                                 tmp_path: Path) -> None:
    docs = by_kind(rendered(helm, FULL, tmp_path))
    for key in ("Job/release-oblivio-schedule", "Deployment/release-oblivio-mlflow"):
        pod = docs[key]["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == FULL["nodeSelector"]
        assert pod["tolerations"] == FULL["tolerations"]
        assert pod["affinity"] == FULL["affinity"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["imagePullSecrets"] == [{"name": "ghcr"}]
        (container,) = pod["containers"]
        assert container["image"] == f"ghcr.io/oblivio-dev/oblivio@{DIGEST}"
        assert container["resources"]["requests"]
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    secret = docs["Secret/oblivio-credentials"]["stringData"]
    assert secret["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert secret["OBLIVIO_LEDGER_URL"].startswith("postgresql")
    assert "MLFLOW_TRACKING_PASSWORD" not in secret  # empty values are left out
    # the pipeline's steps run the chart's image too, here by digest
    pipeline = docs["ConfigMap/release-oblivio-pipeline"]["data"]["oblivio-deletion-batch.yaml"]
    images = {e["container"]["image"] for e in yaml.safe_load_all(pipeline).__next__()[
        "deploymentSpec"]["executors"].values()}
    assert images == {f"ghcr.io/oblivio-dev/oblivio@{DIGEST}"}


def test_the_hook_schedules_the_configmaps_pipeline_with_typed_parameters(
        helm: str, tmp_path: Path) -> None:
    """What the hook Job runs, decoded as `oblivio pipeline schedule` decodes it: every
    parameter is one the compiled pipeline declares, with the type it declares."""
    docs = by_kind(rendered(helm, FULL, tmp_path))
    job = docs["Job/release-oblivio-schedule"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["oblivio", "pipeline", "schedule"]
    options = dict(arg.removeprefix("--").split("=", 1) for arg in container["args"]
                   if not arg.startswith("--param="))
    assert options == {"host": "http://ml-pipeline.kubeflow.svc.cluster.local:8888",
                       "cron": "0 30 1 * * *", "experiment": "oblivio", "namespace": "team-a",
                       "package": "/etc/oblivio/oblivio-deletion-batch.yaml"}
    params = dict(arg.removeprefix("--param=").split("=", 1) for arg in container["args"]
                  if arg.startswith("--param="))
    params = {k: json.loads(v) for k, v in params.items()}
    declared = yaml.safe_load(PIPELINE.read_text().split("\n---\n")[0])["root"][
        "inputDefinitions"]["parameters"]
    types = {"STRING": str, "NUMBER_INTEGER": int, "NUMBER_DOUBLE": (int, float),
             "BOOLEAN": bool, "STRUCT": dict, "LIST": list}
    for name, value in params.items():
        assert name in declared, f"schedule parameter {name} is not a pipeline parameter"
        assert isinstance(value, types[declared[name]["parameterType"]]), name
    assert params["gpu_count"] == "2" and params["secret_name"] == "oblivio-credentials"
    assert params["node_selector"] == {"nvidia.com/gpu.present": "true"}
    mount = container["volumeMounts"][0]["mountPath"]
    assert options["package"].startswith(mount)


def test_a_values_typo_or_missing_secret_is_refused(helm: str, tmp_path: Path) -> None:
    typo = run_helm(helm, "template", "release", tmp_path=tmp_path, values={
        "credentials": {"existingSecret": "s"}, "schedule": {"crn": "0 0 3 * * *"}})
    assert typo.returncode != 0 and "crn" in typo.stderr
    nested = run_helm(helm, "template", "release", tmp_path=tmp_path, values={
        "credentials": {"existingSecret": "s"},
        "schedule": {"parameters": {"max_forget_accuracy": 0.1}}})
    assert nested.returncode != 0 and "max_forget_accuracy" in nested.stderr
    cron = run_helm(helm, "template", "release", tmp_path=tmp_path, values={
        "credentials": {"existingSecret": "s"}, "schedule": {"cron": "0 2 * * *"}})
    assert cron.returncode != 0 and "cron" in cron.stderr
    nothing = run_helm(helm, "template", "release", tmp_path=tmp_path)
    assert nothing.returncode != 0 and "set existingSecret" in nothing.stderr


def test_the_charts_image_and_pipeline_are_the_compiled_ones() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert f"{values['image']['repository']}:{chart['appVersion']}" == IMAGE
    spec = yaml.safe_load(PIPELINE.read_text().split("\n---\n")[0])
    assert {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()} == {
        IMAGE}
    assert (CHART / "files" / "oblivio-deletion-batch.yaml").read_text() == PIPELINE.read_text()
    schema = json.loads((CHART / "values.schema.json").read_text())
    declared = spec["root"]["inputDefinitions"]["parameters"]
    assert set(schema["properties"]["schedule"]["properties"]["parameters"][
        "properties"]) <= set(declared)


def test_compile_pins_the_image_by_digest(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from oblivio.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["pipeline", "compile", "--out", str(tmp_path),
                                 "--image-digest", DIGEST])
    assert result.exit_code == 0, result.output
    for name in ("oblivio_unlearning", "oblivio_deletion_batch"):
        spec = yaml.safe_load((tmp_path / name / "pipeline.yaml").read_text().split(
            "\n---\n")[0])
        assert {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()
                } == {f"ghcr.io/oblivio-dev/oblivio@{DIGEST}"}
    bad = runner.invoke(app, ["pipeline", "compile", "--out", str(tmp_path / "bad"),
                              "--image-digest", "latest"])
    assert bad.exit_code == 2 and "expected sha256:" in bad.stderr
    assert not (tmp_path / "bad").exists()
