"""The compiled spec as the Kubeflow backend will read it. No Kubernetes cluster or Kubeflow API
can run here, so the cluster settings (GPU, node selector, tolerations, secret) are checked in
the compiled YAML, against the types the backend's driver accepts, not executed."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from oblivio.cli import app
from oblivio_pipeline import CONTROL_IMAGE, IMAGE

runner = CliRunner()
HERE = Path(__file__).resolve().parents[1]
IMAGE_REPO = IMAGE.rsplit(":", 1)[0]
CONTROL_REPO = CONTROL_IMAGE.rsplit(":", 1)[0]


def normalised(text: str) -> list:
    """The YAML documents without what legitimately changes between releases, as kfp's own
    golden tests do it (sdk/python/kfp/compiler/read_write_test.py): the kfp version, and the
    project images' tag (it follows oblivio's version)."""

    def walk(node):
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items() if k != "sdkVersion"}
        if isinstance(node, list):
            return [walk(v) for v in node]
        for repo in (IMAGE_REPO, CONTROL_REPO):
            if isinstance(node, str) and node.startswith(repo + ":"):
                return repo + ":<version>"
        return node

    return [walk(doc) for doc in yaml.safe_load_all(text)]


def compiled(tmp_path: Path) -> str:
    result = runner.invoke(app, ["pipeline", "compile", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    return (tmp_path / "oblivio_unlearning" / "pipeline.yaml").read_text()


def test_committed_yaml_is_current(tmp_path: Path) -> None:
    fresh = compiled(tmp_path)
    committed = (HERE / "pipeline.yaml").read_text()
    assert normalised(fresh) == normalised(committed), (
        "pipelines/oblivio_unlearning/pipeline.yaml is stale: run `oblivio pipeline compile`")


def test_normalisation_hides_versions_not_drift() -> None:
    committed = (HERE / "pipeline.yaml").read_text()
    bumped = committed.replace("sdkVersion: kfp-", "sdkVersion: kfp-9").replace(
        IMAGE, IMAGE_REPO + ":9.9.9")
    assert bumped != committed and normalised(bumped) == normalised(committed)
    drifted = committed.replace("maxRetryCount: 3", "maxRetryCount: 4", 1)
    assert drifted != committed and normalised(drifted) != normalised(committed)


def test_platform_parameters_have_the_types_the_driver_accepts(tmp_path: Path) -> None:
    spec, platform = list(yaml.safe_load_all(compiled(tmp_path)))
    params = spec["root"]["inputDefinitions"]["parameters"]
    # the driver takes a node selector only as a struct and tolerations as a list or struct
    # (kubeflow/pipelines PR #11860); the accelerator count is a string field it fills in
    assert params["node_selector"]["parameterType"] == "STRUCT"
    assert params["tolerations"]["parameterType"] == "LIST"
    assert params["gpu_count"]["parameterType"] == "STRING"
    assert params["gpu_count"]["defaultValue"] == "1"
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name, executor in executors.items():
        assert executor["nodeSelector"]["nodeSelectorJson"]["componentInputParameter"].endswith(
            "node_selector"), name
        assert executor["tolerations"][0]["tolerationJson"]["componentInputParameter"].endswith(
            "tolerations"), name
        required, optional = executor["secretAsEnv"]
        assert required["keyToEnv"] == [{"envVar": "MLFLOW_TRACKING_URI",
                                          "secretKey": "MLFLOW_TRACKING_URI"}], name
        assert required["optional"] is False and optional["optional"] is True, name
        assert required["secretNameParameter"]["componentInputParameter"].endswith(
            "secret_name"), name
    containers = {name: e["container"] for name, e in spec["deploymentSpec"]["executors"].items()}
    with_gpu = {name for name, c in containers.items()
                if "accelerator" in c.get("resources", {})}
    assert with_gpu == {"exec-capture-activations", "exec-capture-activations-2",
                        "exec-apply-projection", "exec-apply-contrast", "exec-unlearn-instances",
                        "exec-evaluate-model", "exec-evaluate-model-2", "exec-evaluate-model-3",
                        *(f"exec-predict-outputs{s}" for s in ("", "-2", "-3"))}
    for name, container in containers.items():  # every step asks for CPU and memory
        resources = container["resources"]
        if name in with_gpu:
            assert "compute_cpu" in resources["resourceCpuRequest"], name
            assert "compute_memory" in resources["resourceMemoryRequest"], name
        else:
            assert (resources["resourceCpuRequest"], resources["resourceMemoryRequest"]) == (
                "1", "2Gi"), name
    accelerator = containers["exec-capture-activations"]["resources"]["accelerator"]
    assert accelerator["resourceType"] == "nvidia.com/gpu"
    assert "gpu_count" in accelerator["resourceCount"]
    # the model's steps run the project image, the exit handler and plan_shards the
    # control-plane one (no torch); both from the version
    control = {n for n, c in containers.items() if c["image"] == CONTROL_IMAGE}
    assert control == {"exec-record-outcome", "exec-plan-shards"}
    assert {c["image"] for n, c in containers.items() if n not in control} == {IMAGE}
    assert all("pip install" not in " ".join(c["command"]) for c in containers.values())


def test_steps_parameters_and_branches(tmp_path: Path) -> None:
    spec = next(yaml.safe_load_all(compiled(tmp_path)))
    assert spec["pipelineInfo"]["name"] == "oblivio-unlearning"
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert {"gpu_count", "node_selector", "tolerations", "secret_name", "model_name",
            "forget_classes", "forget_ids_uri", "instance_ablation", "alpha_mode",
            "class_method", "ratio_mode", "ratio", "rounds"} <= set(params)
    assert all("defaultValue" in p and p.get("description") for p in params.values())
    components = spec["components"]
    tasks = components["comp-exit-handler-1"]["dag"]["tasks"]
    assert tasks["resolve-model"]["cachingOptions"] == {}  # the alias moves
    assert tasks["resolve-model"]["retryPolicy"]["maxRetryCount"] == 3  # I/O steps retry
    assert set(tasks) == {"validate-request", "resolve-model", "sample-data", "plan-shards",
                          "condition-branches-2"}
    assert tasks["plan-shards"]["dependentTasks"] == ["validate-request"]
    validate = tasks["validate-request"]  # first, never retried, never cached
    assert "retryPolicy" not in validate and validate["cachingOptions"] == {}
    assert "dependentTasks" not in validate
    assert tasks["resolve-model"]["dependentTasks"] == ["validate-request"]
    resolve_inputs = tasks["resolve-model"]["inputs"]["parameters"]
    assert {"class_method", "alpha_mode", "ratio_mode", "forget_classes"} <= set(resolve_inputs)
    classes = components["comp-condition-10"]["dag"]["tasks"]
    contrast = components["comp-condition-7"]["dag"]["tasks"]
    projection = components["comp-condition-8"]["dag"]["tasks"]
    instances = components["comp-condition-11"]["dag"]["tasks"]
    # retain || forget, each fanned out over the shards and merged
    assert set(classes) == {"for-loop-3", "for-loop-4", "merge-statistics",
                            "merge-statistics-2", "condition-branches-5"}
    assert set(contrast) == {"apply-contrast", "for-loop-6", "evaluate-model", "register-model"}
    assert set(projection) == {"compute-subspaces", "apply-projection", "for-loop-9",
                               "evaluate-model-2", "register-model-2"}
    assert set(instances) == {"unlearn-instances", "for-loop-12", "evaluate-model-3",
                              "register-model-3"}
    loops = {"3": {"capture-activations"}, "4": {"capture-activations-2"},
             "6": {"predict-outputs"}, "9": {"predict-outputs-2"},
             "12": {"predict-outputs-3"}}
    parents = {"3": classes, "4": classes, "6": contrast, "9": projection, "12": instances}
    for n, steps in loops.items():
        assert set(components[f"comp-for-loop-{n}"]["dag"]["tasks"]) == steps
        loop = parents[n][f"for-loop-{n}"]
        assert loop["iteratorPolicy"]["parallelismLimit"] == 16
        assert loop["parameterIterator"]["items"]["inputParameter"].endswith(
            "plan-shards-Output")
        for step in steps:  # each shard is told which it is and how many there are
            inputs = components[f"comp-for-loop-{n}"]["dag"]["tasks"][step]["inputs"]
            assert inputs["parameters"]["shard"]["componentInputParameter"].endswith(
                "loop-item")
            assert inputs["parameters"]["shards"]["componentInputParameter"].endswith(
                "shards")
    for merge in ("merge-statistics", "merge-statistics-2"):  # the reduce: every shard, in order
        parts = classes[merge]["inputs"]["artifacts"]["parts"]["taskOutputArtifact"]
        assert parts["producerTask"] in ("for-loop-3", "for-loop-4")
    evaluate_inputs = components["comp-evaluate-model"]["inputDefinitions"]["artifacts"]
    assert evaluate_inputs["original_train"]["isArtifactList"] is True
    assert evaluate_inputs["unlearned_train"]["isArtifactList"] is True
    assert params["shards"]["defaultValue"] == 1
    for register in (contrast["register-model"], projection["register-model-2"],
                     instances["register-model-3"]):
        assert register["cachingOptions"] == {}  # never skip a registration
        assert "retryPolicy" not in register
    branch = components["comp-condition-branches-2"]["dag"]["tasks"]
    assert "forget_ids_uri" in branch["condition-10"]["triggerPolicy"]["condition"]
    method = components["comp-condition-branches-5"]["dag"]["tasks"]
    assert "class_method" in method["condition-7"]["triggerPolicy"]["condition"]
    exit_task = spec["root"]["dag"]["tasks"]["record-outcome"]
    assert exit_task["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
