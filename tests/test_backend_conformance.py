"""The committed pipelines (compiled for a cluster) against the Kubeflow Pipelines backend's own
rules (tests/backend_rules.py names the backend function each mirrors). kfp's local runner,
which the end-to-end tests use, is more lenient than the backend on every one of them."""

from pathlib import Path

import pytest
from kfp import compiler, dsl, kubernetes

from oblivio_pipeline import MIN_BACKEND, NEEDS_BACKEND
from tests import backend_rules as rules

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ["oblivio_unlearning", "oblivio_deletion_batch"]
#: Steps whose failure is a decision (bad input, a gate, the ledger's refusal): a retry cannot
#: change it, and for the ledger steps a retry would find the batch already sent back.
DECISIONS = ("validate-request", "register-model", "claim-batch", "settle-batch",
             "complete-batch")


@pytest.fixture(scope="module", params=PIPELINES)
def compiled(request) -> rules.Pipeline:
    return rules.Pipeline((ROOT / "pipelines" / request.param / "pipeline.yaml").read_text())


@pytest.mark.parametrize("rule", [rules.undeclared_inputs, rules.foreign_producers,
                                  rules.unresolvable_control_inputs,
                                  rules.mistyped_platform_parameters,
                                  rules.unresolved_placeholders],
                         ids=lambda r: r.__name__)
def test_the_compiled_pipeline_keeps_the_backend_rule(compiled: rules.Pipeline, rule) -> None:
    assert rule(compiled) == []


def _tiny(register: bool, folder: Path) -> rules.Pipeline:
    @dsl.component(base_image="python:3.11")
    def step() -> None:
        pass

    @dsl.pipeline(name="tiny")
    def tiny(cpu: str = "1", flag: str = "on", nodes: dict = {}) -> None:  # noqa: B006
        with dsl.If(flag == "on"):
            task = step().set_cpu_request(cpu)
            kubernetes.add_node_selector_json(task, nodes)
            if register:
                task.register_pipeline_channels([cpu])

    path = folder / f"tiny-{register}.yaml"
    compiler.Compiler().compile(tiny, str(path))
    return rules.Pipeline(path.read_text())


def test_the_rules_catch_what_the_backend_refuses(tmp_path: Path) -> None:
    """The control that must fail: a CPU request from a run parameter inside a condition,
    compiled by kfp 2.17 as the pipelines were before, reads an input its DAG lacks."""
    broken = _tiny(False, tmp_path)
    found = rules.undeclared_inputs(broken)
    assert len(found) == 1 and "pipelinechannel--cpu" in found[0]
    assert not any("node selector" in v for v in rules.mistyped_platform_parameters(broken))
    fixed = _tiny(True, tmp_path)
    assert rules.undeclared_inputs(fixed) == rules.mistyped_platform_parameters(fixed) == []


def test_a_placeholder_the_backend_leaves_as_text_is_caught(tmp_path: Path) -> None:
    """The control: the pipeline root as a placeholder, which kfp's local runner fills in and
    the backend passes on as the literal text (why claim_batch finds the run's folder from its
    own output's URI instead)."""
    @dsl.component(base_image="python:3.11")
    def step(root: str, job: str) -> None:
        pass

    @dsl.pipeline(name="roots")
    def roots() -> None:
        step(root=dsl.PIPELINE_ROOT_PLACEHOLDER, job=dsl.PIPELINE_JOB_ID_PLACEHOLDER)

    compiler.Compiler().compile(roots, str(tmp_path / "roots.yaml"))
    found = rules.unresolved_placeholders(rules.Pipeline((tmp_path / "roots.yaml").read_text()))
    assert len(found) == 1 and "input root is '{{$.pipeline_root}}'" in found[0]


def test_a_foreign_producer_and_a_mistyped_secret_name_are_caught(
        compiled: rules.Pipeline) -> None:
    spec = compiled.components["root"]["dag"]["tasks"]
    name, task = next((n, t) for n, t in spec.items() if "dependentTasks" not in t)
    task["dependentTasks"] = ["no-such-task"]
    assert rules.foreign_producers(compiled) == [f"root/{name}: depends on no-such-task, not "
                                                 "a task of root"]
    del task["dependentTasks"]
    compiled.inputs_of("root")["parameters"]["secret_name"]["parameterType"] = "STRUCT"
    assert any("secret name reads secret_name as STRUCT" in v
               for v in rules.mistyped_platform_parameters(compiled))
    compiled.inputs_of("root")["parameters"]["secret_name"]["parameterType"] = "STRING"


def test_the_stated_minimum_backend_is_what_the_features_need(
        compiled: rules.Pipeline) -> None:
    needed = rules.minimum_backend(compiled)
    assert ".".join(map(str, needed)) == MIN_BACKEND
    assert compiled.spec["pipelineInfo"]["description"].endswith(NEEDS_BACKEND)
    assert f"Kubeflow Pipelines {MIN_BACKEND}" in (ROOT / "README.md").read_text()


def test_every_step_has_a_deadline_and_no_decision_is_retried(
        compiled: rules.Pipeline) -> None:
    for task in compiled.tasks():
        executor = compiled.executor_of(task)
        if executor is None:
            continue
        deadline = int(compiled.kubernetes(executor).get("activeDeadlineSeconds", 0))
        assert 0 < deadline < 6 * 3600, f"{task.name}: deadline {deadline}"  # < the lease
        if task.spec["componentRef"]["name"].removeprefix("comp-").startswith(DECISIONS):
            assert "retryPolicy" not in task.spec, f"{task.name} is retried"
