"""The Helm chart (charts/oblivio), as a platform team installs it into a Kubeflow profile
namespace: `helm lint` and `helm template` with the default and with every option set, each
rendered manifest validated offline against the Kubernetes schemas (kubernetes-validate,
strict), against Pod Security "restricted" and by a policy scanner (checkov); a values typo
rejected by the strict schema; the hooks' commands, the `helm test` pod and the MLflow server's
settings run for real against the Kubeflow stub and a real `mlflow server`. No cluster runs
here: nothing is installed, only rendered, validated and its commands run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from kubernetes_validate.utils import validate

from oblivio_pipeline import CONTROL_IMAGE, IMAGE

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "oblivio"
PIPELINE = ROOT / "pipelines" / "oblivio_deletion_batch" / "pipeline.yaml"
KUBERNETES = "1.33.0"
NAMESPACE = "team-a"
DIGEST = "sha256:" + "ab" * 32
CONTROL_DIGEST = "sha256:" + "cd" * 32
FULL = {
    "image": {"digest": DIGEST, "controlDigest": CONTROL_DIGEST},
    "imagePullSecrets": [{"name": "ghcr"}],
    "credentials": {"create": True, "values": {
        "mlflowTrackingUri": "http://mlflow:5000", "ledgerUrl": "postgresql+psycopg://l/l",
        "awsAccessKeyId": "id", "awsSecretAccessKey": "key",
        "awsEndpointUrl": "http://minio:9000", "mlflowBackendStoreUri": "postgresql://m/m"}},
    "serviceAccounts": {"mlflow": {"annotations": {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/o"}}},
    "kubeflow": {"namespace": "team-a"},
    "schedule": {"cron": "0 30 1 * * *", "parameters": {
        "gpu_count": "2", "node_selector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }},
    "mlflow": {"enabled": True},
    "nodeSelector": {"kubernetes.io/arch": "amd64"},
    "tolerations": [{"key": "batch", "operator": "Exists"}],
    "podLabels": {"access-ml-pipeline": "true"},
    "podAnnotations": {"policy.example.com/tier": "ml"},
    "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
    "networkPolicy": {"mlflowFrom": [{"matchLabels": {
        "kubernetes.io/metadata.name": "team-a"}}]},
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
    result = run_helm(helm, "template", "release", "--namespace", NAMESPACE, values=values,
                      tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def by_kind(docs: list[dict]) -> dict[str, dict]:
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


@pytest.fixture(scope="module")
def checkov() -> str:
    """`make test` installs checkov into .tools/checkov (OBLIVIO_CHECKOV); else skip."""
    found = os.environ.get("OBLIVIO_CHECKOV") or shutil.which("checkov")
    if found and Path(found).exists():
        return str(Path(found).resolve())
    if os.environ.get("OBLIVIO_REQUIRE_POSTGRES"):
        pytest.fail("checkov missing: `make test` installs it (make checkov)")
    pytest.skip("checkov is not installed (make checkov installs it)")


def pods(docs: list[dict]) -> dict[str, dict]:
    """Every pod spec the chart renders, by its workload's kind/name."""
    out = {}
    for key, doc in by_kind(docs).items():
        if doc["kind"] == "Pod":
            out[key] = doc["spec"]
        elif doc["kind"] in ("Job", "Deployment"):
            out[key] = doc["spec"]["template"]["spec"]
        elif doc["kind"] == "CronJob":
            out[key] = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return out


#: Volume types Pod Security "restricted" admits (k8s.io/pod-security-admission,
#: policy/check_restrictedVolumes.go).
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}


def restricted_violations(pod: dict) -> list[str]:
    """Pod Security Standards "restricted" (v1.33), check by check as
    k8s.io/pod-security-admission/policy implements them: runAsNonRoot (check_runAsNonRoot.go),
    runAsUser != 0 (check_runAsUser.go), seccomp RuntimeDefault or Localhost
    (check_seccompProfile_restricted.go), allowPrivilegeEscalation false
    (check_allowPrivilegeEscalation.go), capabilities drop ALL and add at most
    NET_BIND_SERVICE (check_capabilities_restricted.go), no privileged container, host
    namespace or hostPath (baseline), volume types (check_restrictedVolumes.go)."""
    bad = []
    pod_ctx = pod.get("securityContext", {})
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            bad.append(flag)
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            bad.append(f"volume {volume['name']}: {kinds}")
    for c in pod.get("initContainers", []) + pod["containers"]:
        ctx = c.get("securityContext", {})
        name = c["name"]
        if not ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")):
            bad.append(f"{name}: runAsNonRoot")
        if ctx.get("runAsUser", pod_ctx.get("runAsUser")) in (0, None):
            bad.append(f"{name}: runAsUser must be a numeric non-root UID")
        seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{name}: seccompProfile {seccomp}")
        if ctx.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{name}: allowPrivilegeEscalation")
        caps = ctx.get("capabilities", {})
        if "ALL" not in caps.get("drop", []) or set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            bad.append(f"{name}: capabilities")
        if ctx.get("privileged"):
            bad.append(f"{name}: privileged")
    return bad


@pytest.mark.parametrize("name", ["default", "full"])
def test_lints_renders_and_validates(helm: str, tmp_path: Path, name: str) -> None:
    values = {"credentials": {"existingSecret": "oblivio-prod"}} if name == "default" else FULL
    lint = run_helm(helm, "lint", "--strict", values=values, tmp_path=tmp_path)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    docs = rendered(helm, values, tmp_path)
    for doc in docs:
        validate(doc, KUBERNETES, strict=True)  # raises on any schema violation
        # client-side apply (the GitOps default) stores the object in a 256 KiB annotation
        assert len(json.dumps(doc)) < 256 * 1024, doc["metadata"]["name"]
    kinds = sorted(by_kind(docs))
    expected = ["Job/release-oblivio-schedule", "Job/release-oblivio-unschedule",
                "Pod/release-oblivio-test", "Role/release-oblivio-schedule",
                "RoleBinding/release-oblivio-schedule", "ServiceAccount/release-oblivio-schedule",
                "NetworkPolicy/release-oblivio-schedule", "NetworkPolicy/release-oblivio-test",
                "Job/release-oblivio-ledger-upgrade", "CronJob/release-oblivio-audit-verify",
                "NetworkPolicy/release-oblivio-ledger"]
    if name == "full":
        expected += ["Deployment/release-oblivio-mlflow", "Secret/oblivio-credentials",
                     "Service/release-oblivio-mlflow", "ServiceAccount/release-oblivio-mlflow",
                     "NetworkPolicy/release-oblivio-mlflow"]
    assert kinds == sorted(expected)
    for key, pod in pods(docs).items():
        assert restricted_violations(pod) == [], key


def test_the_restricted_check_refuses_what_admission_refuses(helm: str,
                                                              tmp_path: Path) -> None:
    """The control: a pod as the chart rendered it before (no seccomp profile, the image's
    user by name only) fails the same check admission would."""
    pod = pods(rendered(helm, FULL, tmp_path))["Job/release-oblivio-schedule"]
    del pod["securityContext"]["seccompProfile"], pod["securityContext"]["runAsUser"]
    assert restricted_violations(pod) == [
        "schedule: runAsUser must be a numeric non-root UID", "schedule: seccompProfile None"]


def test_every_workload_takes_the_scheduling_security_and_pod_values(helm: str,
                                                                     tmp_path: Path) -> None:
    docs = by_kind(rendered(helm, FULL, tmp_path))
    for key, pod in pods(list(docs.values())).items():
        assert pod["nodeSelector"] == FULL["nodeSelector"]
        assert pod["tolerations"] == FULL["tolerations"]
        assert pod["affinity"] == FULL["affinity"]
        assert pod["imagePullSecrets"] == [{"name": "ghcr"}]
        assert pod["automountServiceAccountToken"] is False  # no Kubernetes API token
        for container in pod.get("initContainers", []) + pod["containers"]:
            # the chart's pods need no torch: the control-plane image, by its digest
            assert container["image"] == f"ghcr.io/oblivio-dev/oblivio-control@{CONTROL_DIGEST}"
            assert container["resources"]["requests"]
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert {"name": "HTTPS_PROXY", "value": "http://proxy:3128"} in container["env"]
        kind = key.split("/")[0]
        meta = (docs[key]["metadata"] if kind == "Pod" else
                docs[key]["spec"]["jobTemplate"]["spec"]["template"]["metadata"]
                if kind == "CronJob" else docs[key]["spec"]["template"]["metadata"])
        assert meta["labels"]["access-ml-pipeline"] == "true"
        assert meta["annotations"]["policy.example.com/tier"] == "ml"
        # an Istio sidecar starts before the app, and a Job stops it when done
        assert "holdApplicationUntilProxyStarts" in meta["annotations"]["proxy.istio.io/config"]
    for key in ("Job/release-oblivio-schedule", "Pod/release-oblivio-test",
                "Job/release-oblivio-ledger-upgrade", "CronJob/release-oblivio-audit-verify"):
        script = pods(list(docs.values()))[key]["containers"][0]["command"][2]
        assert "15020/quitquitquit" in script and script.startswith('"$@"; rc=$?')
    secret = docs["Secret/oblivio-credentials"]["stringData"]
    assert secret["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "MLFLOW_TRACKING_PASSWORD" not in secret  # empty values are left out
    sas = {k: d for k, d in docs.items() if k.startswith("ServiceAccount/")}
    assert all(sa["automountServiceAccountToken"] is False for sa in sas.values())
    mlflow_pod = docs["Deployment/release-oblivio-mlflow"]["spec"]["template"]["spec"]
    assert mlflow_pod["serviceAccountName"] == "release-oblivio-mlflow"
    assert docs["ServiceAccount/release-oblivio-mlflow"]["metadata"]["annotations"] == FULL[
        "serviceAccounts"]["mlflow"]["annotations"]


def test_the_ledger_is_upgraded_before_an_upgrade_and_verified_on_a_schedule(
        helm: str, tmp_path: Path) -> None:
    """The ledger's Jobs run CLI commands that exist with these arguments (parsed by the CLI
    itself), read the credentials Secret, and a verify break is never retried away."""
    import click
    import typer

    from oblivio.cli import app

    values = {**FULL, "verify": {"cron": "15 4 * * *", "pushgateway": "http://pg:9091",
                                 "weights": False}}
    docs = by_kind(rendered(helm, values, tmp_path))
    upgrade = docs["Job/release-oblivio-ledger-upgrade"]
    assert upgrade["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"
    cron = docs["CronJob/release-oblivio-audit-verify"]
    assert cron["spec"]["schedule"] == "15 4 * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 0
    command = typer.main.get_command(app)
    for key in ("Job/release-oblivio-ledger-upgrade", "CronJob/release-oblivio-audit-verify"):
        container = pods(list(docs.values()))[key]["containers"][0]
        assert container["envFrom"] == [{"secretRef": {"name": "oblivio-credentials"}}]
        args = container["args"]
        assert args[0] == "oblivio"
        with command.make_context("oblivio", list(args[1:]), resilient_parsing=False) as ctx:
            group = ctx.command
            sub = group.get_command(ctx, args[1])
            assert sub is not None, args
            if isinstance(sub, click.Group):
                leaf = sub.get_command(ctx, args[2])
                assert leaf is not None, args
                leaf.make_context(args[2], list(args[3:]), parent=ctx)  # raises on a bad arg
    assert pods(list(docs.values()))["CronJob/release-oblivio-audit-verify"]["containers"][0][
        "args"][3:] == ["--model-name=fashion-classifier", "--no-weights",
                        "--pushgateway=http://pg:9091"]
    off = by_kind(rendered(helm, {**FULL, "verify": {"enabled": False},
                                  "ledger": {"upgrade": False}}, tmp_path))
    assert not [k for k in off if "ledger-upgrade" in k or "audit-verify" in k]


def test_the_hooks_schedule_and_unschedule_with_the_projected_token(
        helm: str, tmp_path: Path) -> None:
    """What the hook Jobs run, decoded as `oblivio pipeline schedule` decodes it: every
    parameter is one the compiled pipeline declares, with the type it declares; the token is
    the projected one Kubeflow expects; the old schedule goes on rollback and uninstall too."""
    docs = by_kind(rendered(helm, FULL, tmp_path))
    job = docs["Job/release-oblivio-schedule"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == \
        "post-install,post-upgrade,post-rollback"
    assert docs["Job/release-oblivio-unschedule"]["metadata"]["annotations"][
        "helm.sh/hook"] == "pre-delete"
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][:3] == ["oblivio", "pipeline", "schedule"]
    args = container["args"][3:]
    options = dict(arg.removeprefix("--").split("=", 1) for arg in args
                   if not arg.startswith("--param="))
    assert options == {"host": "http://ml-pipeline.kubeflow.svc.cluster.local:8888",
                       "cron": "0 30 1 * * *", "experiment": "oblivio", "namespace": "team-a",
                       "job-name": "oblivio-deletion-batch", "wait-minutes": "5",
                       "pipeline-name": "oblivio-deletion-batch",
                       "token-file": "/var/run/secrets/kubeflow/pipelines/token",
                       "image": f"ghcr.io/oblivio-dev/oblivio@{DIGEST}",
                       "control-image": f"ghcr.io/oblivio-dev/oblivio-control@{CONTROL_DIGEST}"}
    params = dict(arg.removeprefix("--param=").split("=", 1) for arg in args
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
    token = next(v for v in pod["volumes"] if v["name"] == "kfp-token")
    (source,) = token["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == "pipelines.kubeflow.org"
    mount = next(m for m in container["volumeMounts"] if m["name"] == "kfp-token")
    assert options["token-file"] == f"{mount['mountPath']}/{source['serviceAccountToken']['path']}"
    assert job["spec"]["activeDeadlineSeconds"] > 60 * float(options["wait-minutes"])


def test_the_schedule_role_grants_only_kubeflow_pipelines_in_the_profile(
        helm: str, tmp_path: Path) -> None:
    docs = by_kind(rendered(helm, FULL, tmp_path))
    role = docs["Role/release-oblivio-schedule"]
    binding = docs["RoleBinding/release-oblivio-schedule"]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "team-a"
    assert {g for rule in role["rules"] for g in rule["apiGroups"]} == {
        "pipelines.kubeflow.org"}
    granted = {(r, v) for rule in role["rules"] for r in rule["resources"]
               for v in rule["verbs"]}
    # what schedule, unschedule and check call (backend/src/apiserver: resource manager's
    # authorization per call)
    assert {("pipelines", "create"), ("pipelines", "list"), ("experiments", "create"),
            ("experiments", "list"), ("jobs", "create"), ("jobs", "disable"),
            ("jobs", "enable"), ("jobs", "delete"), ("jobs", "list"),
            ("runs", "list")} <= granted
    assert not {v for _, v in granted} & {"*", "update", "terminate", "archive"}
    assert binding["subjects"] == [{"kind": "ServiceAccount",
                                    "name": "release-oblivio-schedule",
                                    "namespace": NAMESPACE}]


#: checkov's findings the chart keeps, each with why.
ACCEPTED = {
    ("CKV_K8S_35", "Deployment.team-a.release-oblivio-mlflow"):
        "MLflow takes its backend store URI and S3 keys only from the environment",
    ("CKV_K8S_35", "Job.team-a.release-oblivio-ledger-upgrade"):
        "the ledger URL, MLflow and S3 credentials are read from the environment, as by the "
        "pipeline's steps",
    ("CKV_K8S_35", "CronJob.team-a.release-oblivio-audit-verify"):
        "the ledger URL, MLflow and S3 credentials are read from the environment, as by the "
        "pipeline's steps",
    ("CKV_K8S_8", "Pod.team-a.release-oblivio-test"): "a run-to-completion test pod",
    ("CKV_K8S_9", "Pod.team-a.release-oblivio-test"): "a run-to-completion test pod",
}


def scan(checkov: str, docs: list[dict], folder: Path) -> set[tuple[str, str]]:
    folder.mkdir()
    (folder / "chart.yaml").write_text(yaml.safe_dump_all(docs))
    result = subprocess.run([checkov, "-d", str(folder), "--framework", "kubernetes",
                             "--quiet", "--compact", "-o", "json"],
                            capture_output=True, text=True, timeout=300)
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 100  # it ran its checks
    return {(f["check_id"], f["resource"]) for f in report["results"]["failed_checks"]}


#: ... and, where the image is named by tag (the default; image.digest pins it), the checks
#: that want a digest (CKV_K8S_43) or, failing that, pull policy Always (CKV_K8S_15).
BY_TAG = {"CKV_K8S_43", "CKV_K8S_15"}


def test_the_policy_scanner_finds_nothing_but_the_accepted(helm: str, checkov: str,
                                                           tmp_path: Path) -> None:
    full = scan(checkov, rendered(helm, FULL, tmp_path), tmp_path / "full")
    assert full <= set(ACCEPTED)
    default = scan(checkov, rendered(helm, {"credentials": {"existingSecret": "s"}}, tmp_path),
                   tmp_path / "default")
    assert {f for f in default if f[0] not in BY_TAG} <= set(ACCEPTED)
    # the control: the same chart without its security context is flagged
    docs = rendered(helm, FULL, tmp_path)
    for pod in pods(docs).values():
        del pod["securityContext"]
        for container in pod["containers"]:
            del container["securityContext"]
    found = {check for check, _ in scan(checkov, docs, tmp_path / "insecure")}
    assert {"CKV_K8S_20", "CKV_K8S_28", "CKV_K8S_31"} <= found


def test_the_test_pod_and_the_hook_run_against_kubeflow_with_the_token(
        helm: str, tmp_path: Path) -> None:
    """The `helm test` pod's and the hook's own commands, run here against the Kubeflow stub
    that demands the token (tests/kfp_stub.py; no Kubeflow can run here)."""
    from typer.testing import CliRunner

    from oblivio.cli import app
    from tests.kfp_stub import serve_kfp_stub

    docs = by_kind(rendered(helm, FULL, tmp_path))
    token = tmp_path / "token"
    token.write_text("sa-token")
    runner = CliRunner()

    def run(key: str, url: str) -> object:
        pod = pods(list(docs.values()))[key]
        args = [a for a in pod["containers"][0]["args"][1:]
                if not a.startswith(("--host=", "--token-file=", "--mlflow="))]
        return runner.invoke(app, [*args, f"--host={url}", f"--token-file={token}"])

    with serve_kfp_stub(token="sa-token") as (url, stub):
        checked = run("Pod/release-oblivio-test", url)
        assert checked.exit_code == 0, checked.output
        made = run("Job/release-oblivio-schedule", url)
        assert made.exit_code == 0, made.output
        (pipeline,) = stub.pipelines.values()
        assert pipeline["namespace"] == "team-a"
        upload = next(r for r in stub.requests if r["path"].endswith("/upload_version"))
        assert f"image: ghcr.io/oblivio-dev/oblivio@{DIGEST}".encode() in upload["body"]
        assert f"image: ghcr.io/oblivio-dev/oblivio-control@{CONTROL_DIGEST}".encode() in \
            upload["body"]
        assert b"image: ghcr.io/oblivio-dev/oblivio:" not in upload["body"]
        assert b"image: ghcr.io/oblivio-dev/oblivio-control:" not in upload["body"]
        gone = run("Job/release-oblivio-unschedule", url)
        assert gone.exit_code == 0, gone.output
        assert stub.recurring == {}
        stub.token = "another"  # a token Kubeflow does not accept: helm test fails
        refused = run("Pod/release-oblivio-test", url)
        assert refused.exit_code == 2 and "401" in refused.stderr


def test_the_mlflow_server_migrates_and_answers_only_its_service_names(
        helm: str, tmp_path: Path) -> None:
    """The chart's MLflow commands, run here: the init container's `mlflow db upgrade`, then
    `mlflow server` with the rendered --allowed-hosts and environment (a real server): the
    Service names get answers, any other Host header 403, the server runs no job consumers
    (nine processes would not fit the pod's memory limit), and the helm test's check passes."""
    import os
    import re
    import sys

    import requests

    from oblivio_pipeline.schedule import Target, check
    from tests.kfp_stub import serve_kfp_stub
    from tests.servers import descendants, start_mlflow_server

    docs = by_kind(rendered(helm, FULL, tmp_path))
    pod = docs["Deployment/release-oblivio-mlflow"]["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert "mlflow db upgrade" in init["command"][2]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"]["key"]
           for e in pod["containers"][0]["env"] if "valueFrom" in e}
    assert env == {"MLFLOW_BACKEND_STORE_URI": "MLFLOW_BACKEND_STORE_URI",
                   "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
                   "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
                   "MLFLOW_S3_ENDPOINT_URL": "AWS_ENDPOINT_URL"}  # never the ledger's URL
    plain = {e["name"]: e["value"] for e in pod["containers"][0]["env"]
             if e["name"].startswith("MLFLOW_") and "value" in e}
    assert plain == {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    hosts = re.search(r'--allowed-hosts "([^"]+)"', pod["containers"][0]["args"][0]).group(1)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    subprocess.run([sys.executable, "-m", "mlflow", "db", "upgrade", store], check=True,
                   capture_output=True, timeout=300)
    with start_mlflow_server(tmp_path, env=plain, extra_args=["--allowed-hosts", hosts]) as uri:
        port = f"--port {uri.rsplit(':', 1)[1]} "
        (server,) = [pid for pid, line in descendants(os.getpid()).items()
                     if "mlflow server" in line and port in line]
        assert [line for line in descendants(server).values() if "huey" in line] == []
        search = f"{uri}/api/2.0/mlflow/experiments/search?max_results=1"
        for host in ("release-oblivio-mlflow.team-a.svc:5000", "release-oblivio-mlflow:5000"):
            assert requests.get(search, headers={"Host": host}, timeout=10).status_code == 200
        assert requests.get(search, headers={"Host": "evil.example"},
                            timeout=10).status_code == 403
        with serve_kfp_stub() as (kfp, _):
            local = uri.replace("127.0.0.1", "localhost")  # as kubectl port-forward serves it
            assert check(Target(kfp), local)["mlflow"] == local

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


def test_the_charts_images_and_pipeline_are_the_compiled_ones() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert f"{values['image']['repository']}:{chart['appVersion']}" == IMAGE
    assert f"{values['image']['controlRepository']}:{chart['appVersion']}" == CONTROL_IMAGE
    spec = yaml.safe_load(PIPELINE.read_text().split("\n---\n")[0])
    images = {n: e["container"]["image"] for n, e in spec["deploymentSpec"]["executors"].items()}
    assert {n.rstrip("-0123456789") for n, i in images.items() if i == CONTROL_IMAGE} == {
        "exec-claim-batch", "exec-settle-batch", "exec-complete-batch", "exec-record-outcome",
        "exec-plan-shards"}
    assert set(images.values()) == {IMAGE, CONTROL_IMAGE}
    assert not (CHART / "files").exists()  # the hook uploads the pipeline its image carries
    schema = json.loads((CHART / "values.schema.json").read_text())
    declared = spec["root"]["inputDefinitions"]["parameters"]
    assert set(schema["properties"]["schedule"]["properties"]["parameters"][
        "properties"]) <= set(declared)


def test_compile_pins_the_images_by_digest(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from oblivio.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["pipeline", "compile", "--out", str(tmp_path),
                                 "--image-digest", DIGEST, "--control-digest", CONTROL_DIGEST])
    assert result.exit_code == 0, result.output
    for name in ("oblivio_unlearning", "oblivio_deletion_batch"):
        spec = yaml.safe_load((tmp_path / name / "pipeline.yaml").read_text().split(
            "\n---\n")[0])
        assert {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()
                } == {f"ghcr.io/oblivio-dev/oblivio@{DIGEST}",
                      f"ghcr.io/oblivio-dev/oblivio-control@{CONTROL_DIGEST}"}
    for option in ("--image-digest", "--control-digest"):
        bad = runner.invoke(app, ["pipeline", "compile", "--out", str(tmp_path / "bad"),
                                  option, "latest"])
        assert bad.exit_code == 2 and f"{option} 'latest': expected sha256:" in bad.stderr
        assert not (tmp_path / "bad").exists()
