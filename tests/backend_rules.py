"""What the Kubeflow Pipelines backend requires of a compiled pipeline, read from its source
(github.com/kubeflow/pipelines, backend/src/v2, tags 2.4.0 to 2.17.0), as functions over the IR
that return every violation. kfp's local runner checks none of this: it resolves a missing
input from an outer scope and honours features the backend refuses, so a pipeline that runs
locally can still fail on its first task on a cluster.

Each rule names the backend file and function whose behaviour it mirrors."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import yaml

#: ``{{$.inputs.parameters['name']}}``: a task input a pod-spec field reads at run time
PLACEHOLDER = re.compile(r"\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}")
#: ``inputs.parameter_values['name']`` in a trigger condition
CONDITION_INPUT = re.compile(r"inputs\.parameter_values\['([^']+)'\]")


@dataclass(frozen=True)
class Task:
    """One task of one DAG: the component holding the DAG, the task's name and spec."""

    dag: str
    name: str
    spec: dict


class Pipeline:
    """A compiled pipeline (the YAML ``kfp.compiler`` writes, platform spec included)."""

    def __init__(self, text: str) -> None:
        docs = [d for d in yaml.safe_load_all(text) if d]
        self.spec = docs[0]
        self.platform = next((d for d in docs[1:] if "platforms" in d), {}).get("platforms", {})
        self.components = dict(self.spec["components"])
        self.components["root"] = self.spec["root"]

    def inputs_of(self, component: str) -> dict:
        return self.components[component].get("inputDefinitions") or {}

    def tasks(self) -> Iterator[Task]:
        for name, component in self.components.items():
            for task_name, spec in (component.get("dag") or {}).get("tasks", {}).items():
                yield Task(name, task_name, spec)

    def executor_of(self, task: Task) -> str | None:
        return self.components[task.spec["componentRef"]["name"]].get("executorLabel")

    def kubernetes(self, executor: str) -> dict:
        return (self.platform.get("kubernetes", {}).get("deploymentSpec", {})
                .get("executors", {}).get(executor, {}))

    def container(self, executor: str) -> dict:
        return self.spec["deploymentSpec"]["executors"][executor].get("container", {})


def undeclared_inputs(p: Pipeline) -> list[str]:
    """driver/resolve.go, resolveInputParameter and resolveInputArtifact: a task's
    componentInputParameter (componentInputArtifact) is looked up in its parent DAG's inputs
    only ("parent DAG does not have input parameter %s"). kfp.local looks further out."""
    bad = []
    for t in p.tasks():
        declared = p.inputs_of(t.dag)
        for kind, key in (("parameters", "componentInputParameter"),
                          ("artifacts", "componentInputArtifact")):
            for name, spec in (t.spec.get("inputs", {}).get(kind) or {}).items():
                ref = spec.get(key)
                if ref is not None and ref not in (declared.get(kind) or {}):
                    bad.append(f"{t.dag}/{t.name}: input {name} reads {key} {ref}, which "
                               f"{t.dag} does not declare")
    return bad


def foreign_producers(p: Pipeline) -> list[str]:
    """driver/resolve.go, resolveUpstreamParameters and resolveUpstreamArtifacts: a
    taskOutputParameter (taskOutputArtifact) producer is found among the tasks of the
    consumer's own DAG (getDAGTasks), never in an enclosing or sibling DAG."""
    bad = []
    for t in p.tasks():
        siblings = p.components[t.dag]["dag"]["tasks"]
        for kind, key in (("parameters", "taskOutputParameter"),
                          ("artifacts", "taskOutputArtifact")):
            for name, spec in (t.spec.get("inputs", {}).get(kind) or {}).items():
                producer = (spec.get(key) or {}).get("producerTask")
                if producer is not None and producer not in siblings:
                    bad.append(f"{t.dag}/{t.name}: input {name} comes from {producer}, which "
                               f"is not a task of {t.dag}")
        for dep in t.spec.get("dependentTasks", []):
            if dep not in siblings:
                bad.append(f"{t.dag}/{t.name}: depends on {dep}, not a task of {t.dag}")
    return bad


def unresolvable_control_inputs(p: Pipeline) -> list[str]:
    """compiler/argocompiler/dag.go and driver/driver.go (DAG driver): a trigger condition reads
    ``inputs.parameter_values[...]`` and a ParallelFor its ``items.inputParameter`` from the
    task's own inputs."""
    bad = []
    for t in p.tasks():
        own = t.spec.get("inputs", {}).get("parameters") or {}
        condition = t.spec.get("triggerPolicy", {}).get("condition", "")
        for ref in CONDITION_INPUT.findall(condition):
            if ref not in own:
                bad.append(f"{t.dag}/{t.name}: its condition reads {ref}, not an input")
        items = t.spec.get("parameterIterator", {}).get("items", {}).get("inputParameter")
        if items is not None and items not in own:
            bad.append(f"{t.dag}/{t.name}: its loop reads {items}, not an input")
    return bad


#: the run-time placeholders the driver substitutes in a task's constant inputs
#: (driver/resolve.go, resolveInputParameter); any other ``{{$....}}`` reaches the step as text
RESOLVED_PLACEHOLDERS = {"{{$.pipeline_job_name}}", "{{$.pipeline_job_resource_name}}",
                         "{{$.pipeline_job_uuid}}", "{{$.pipeline_task_name}}",
                         "{{$.pipeline_task_uuid}}", "{{$.pipeline_job_create_time_utc}}",
                         "{{$.pipeline_job_schedule_time_utc}}"}


def unresolved_placeholders(p: Pipeline) -> list[str]:
    """driver/resolve.go: a constant input that is one of a few placeholders is replaced
    (``{{$.workspace_path}}`` anywhere in it); every other placeholder, ``{{$.pipeline_root}}``
    among them, which kfp's local runner does replace, is passed on literally."""
    bad = []
    for t in p.tasks():
        for name, value in (t.spec.get("inputs", {}).get("parameters") or {}).items():
            constant = value.get("runtimeValue", {}).get("constant")
            rest = PLACEHOLDER.sub("", constant) if isinstance(constant, str) else ""
            if ("{{$." in rest  # task inputs, even inside an f-string, are substituted
                    and constant not in RESOLVED_PLACEHOLDERS
                    and "{{$.workspace_path}}" not in constant):
                bad.append(f"{t.dag}/{t.name}: input {name} is {constant!r}, which the backend "
                           "does not resolve")
    return bad


def _declared_type(p: Pipeline, t: Task, ref: str) -> str | None:
    return ((p.inputs_of(t.dag).get("parameters") or {}).get(ref) or {}).get("parameterType")


def _own_type(p: Pipeline, t: Task, name: str) -> str | None:
    """The type of a task's own input: the component's declaration, or for an input the
    compiler added (a pipeline channel), the type of the DAG input it reads."""
    component = p.inputs_of(t.spec["componentRef"]["name"]).get("parameters") or {}
    if name in component:
        return component[name]["parameterType"]
    spec = (t.spec.get("inputs", {}).get("parameters") or {}).get(name, {})
    ref = spec.get("componentInputParameter")
    return None if ref is None else _declared_type(p, t, ref)


def mistyped_platform_parameters(p: Pipeline) -> list[str]:
    """What the driver reads each run-time Kubernetes setting as:
    - driver/k8s.go, extendPodSpecPatch: a node selector JSON via resolveK8sJsonParameter
      (``GetStructValue``: a STRUCT); a toleration JSON as a struct or a list; a secret name
      parameter via resolveInputParameterStr (a non-empty STRING); an active deadline > 0.
    - driver/driver.go, initPodSpecPatch, and resolve.go, resolvePodSpecInputRuntimeParameter:
      a resource or accelerator placeholder is the task's own input read with
      ``GetStringValue`` (anything but a STRING resolves to "")."""
    bad = []
    for t in p.tasks():
        executor = p.executor_of(t)
        if executor is None:
            continue
        k8s = p.kubernetes(executor)
        wanted = [(k8s.get("nodeSelector", {}).get("nodeSelectorJson"), {"STRUCT"},
                   "node selector")]
        wanted += [(tol.get("tolerationJson"), {"STRUCT", "LIST"}, "tolerations")
                   for tol in k8s.get("tolerations", [])]
        wanted += [(env.get("secretNameParameter"), {"STRING"}, "secret name")
                   for env in k8s.get("secretAsEnv", [])]
        for spec, types, what in wanted:
            ref = (spec or {}).get("componentInputParameter")
            if ref is None:
                continue
            found = _declared_type(p, t, ref)
            if found not in types:
                bad.append(f"{t.dag}/{t.name}: {what} reads {ref} as {found}, the driver "
                           f"needs {' or '.join(sorted(types))}")
        if "activeDeadlineSeconds" in k8s and int(k8s["activeDeadlineSeconds"]) <= 0:
            bad.append(f"{t.dag}/{t.name}: active deadline {k8s['activeDeadlineSeconds']}")
        resources = p.container(executor).get("resources", {})
        for field, value in _placeholders(resources):
            for name in PLACEHOLDER.findall(value):
                own = t.spec.get("inputs", {}).get("parameters") or {}
                if name not in own:
                    bad.append(f"{t.dag}/{t.name}: {field} reads {name}, not a task input")
                elif _own_type(p, t, name) != "STRING":
                    bad.append(f"{t.dag}/{t.name}: {field} reads {name} as "
                               f"{_own_type(p, t, name)}, the driver reads a STRING")
    return bad


def _placeholders(node, path: str = "resources") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _placeholders(value, f"{path}.{key}")
    elif isinstance(node, str) and PLACEHOLDER.search(node):
        yield path, node


#: Features the pipelines may use, the first backend that honours each, and where it does.
FEATURES = {
    "active deadline (kubernetes.set_timeout)": (
        (2, 4), "driver/driver.go (2.4), driver/k8s.go extendPodSpecPatch (2.14+)"),
    "node selector or tolerations from a run parameter": (
        (2, 5), "driver/driver.go extendPodSpecPatch: GetNodeSelectorJson, TolerationJson"),
    "PipelineTaskFinalStatus in an exit handler": (
        (2, 14), "driver/resolve.go resolveInputParameter, TaskFinalStatus case (2.5: "
                 "'not implemented yet')"),
    "dsl.Collected over a ParallelFor": (
        (2, 14), "driver/resolve.go CollectInputs (absent before 2.14)"),
    "retries on a task below the root DAG": (
        (2, 14), "compiler/argocompiler/container.go: before 2.14 getTaskRetryPolicySpec "
                 "reads the root DAG's tasks only"),
    "optional secret keys": (
        (2, 15), "driver/k8s.go extendPodSpecPatch: secretAsEnv.Optional first read in 2.15.0"),
}


def features_used(p: Pipeline) -> set[str]:
    """Which of FEATURES the compiled pipeline relies on."""
    used = set()
    for t in p.tasks():
        params = t.spec.get("inputs", {}).get("parameters") or {}
        if any("taskFinalStatus" in spec for spec in params.values()):
            used.add("PipelineTaskFinalStatus in an exit handler")
        if "retryPolicy" in t.spec and t.dag != "root":
            used.add("retries on a task below the root DAG")
        executor = p.executor_of(t)
        k8s = p.kubernetes(executor) if executor else {}
        if "activeDeadlineSeconds" in k8s:
            used.add("active deadline (kubernetes.set_timeout)")
        if "nodeSelectorJson" in k8s.get("nodeSelector", {}) or any(
                "tolerationJson" in tol for tol in k8s.get("tolerations", [])):
            used.add("node selector or tolerations from a run parameter")
        if any(env.get("optional") for env in k8s.get("secretAsEnv", [])):
            used.add("optional secret keys")
        siblings = p.components[t.dag]["dag"]["tasks"]
        for kind, key in (("parameters", "taskOutputParameter"),
                          ("artifacts", "taskOutputArtifact")):
            for spec in (t.spec.get("inputs", {}).get(kind) or {}).values():
                producer = siblings.get((spec.get(key) or {}).get("producerTask"), {})
                if "parameterIterator" in producer or "artifactIterator" in producer:
                    used.add("dsl.Collected over a ParallelFor")
    return used


def minimum_backend(p: Pipeline) -> tuple[int, int]:
    return max((FEATURES[f][0] for f in features_used(p)), default=(2, 0))
