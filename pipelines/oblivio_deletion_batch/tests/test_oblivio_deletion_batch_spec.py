"""The compiled deletion-batch pipeline as the Kubeflow backend will read it (no Kubeflow can run
here: its order of steps, conditions and secrets are checked in the YAML; the same pipeline runs
end to end under kfp's local runner in test_oblivio_deletion_batch_local.py)."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from oblivio.cli import app
from oblivio_pipeline.pipelines.oblivio_unlearning.tests.test_oblivio_unlearning_spec import (
    normalised,
)

runner = CliRunner()
HERE = Path(__file__).resolve().parents[1]
LEDGER = {"envVar": "OBLIVIO_LEDGER_URL", "secretKey": "OBLIVIO_LEDGER_URL"}


def compiled(tmp_path: Path) -> list:
    result = runner.invoke(app, ["pipeline", "compile", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    return list(yaml.safe_load_all(
        (tmp_path / "oblivio_deletion_batch" / "pipeline.yaml").read_text()))


def test_committed_yaml_is_current(tmp_path: Path) -> None:
    committed = (HERE / "pipeline.yaml").read_text()
    assert normalised(yaml.safe_dump_all(compiled(tmp_path))) == normalised(committed), (
        "pipelines/oblivio_deletion_batch/pipeline.yaml is stale: run `oblivio pipeline compile`")


def test_claim_then_classes_then_images_then_complete(tmp_path: Path) -> None:
    spec, platform = compiled(tmp_path)
    assert spec["pipelineInfo"]["name"] == "oblivio-deletion-batch"
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["lease_minutes"]["defaultValue"] == 360
    assert params["max_attempts"]["defaultValue"] == 3
    assert all(p.get("description") for p in params.values())
    root = spec["root"]["dag"]["tasks"]
    assert set(root) == {"claim-batch", "honour-batch"}
    assert root["claim-batch"]["cachingOptions"] == {}  # the ledger changes between runs
    # the claim's outputs become the nested pipeline's inputs, and its conditions read those
    honour = root["honour-batch"]["inputs"]["parameters"]
    assert honour["batch_id"]["taskOutputParameter"] == {"outputParameterKey": "batch_id",
                                                         "producerTask": "claim-batch"}
    components = spec["components"]
    (gate,) = components["comp-honour-batch"]["dag"]["tasks"].values()
    assert gate["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--batch_id'] != ''")
    pending = components[gate["componentRef"]["name"]]["dag"]["tasks"]
    branches = components[pending["condition-branches-2"]["componentRef"]["name"]]["dag"]["tasks"]
    classes, no_classes = (components[branches[c]["componentRef"]["name"]]["dag"]["tasks"]
                           for c in ("condition-3", "condition-4"))
    assert "forget_classes'] != ''" in branches["condition-3"]["triggerPolicy"]["condition"]
    assert classes["settle-batch"]["dependentTasks"] == ["oblivio-unlearning"]
    assert classes["settle-batch"]["inputs"]["parameters"]["kind"]["runtimeValue"][
        "constant"] == "classes"
    assert set(no_classes) == {"settle-batch-2"}
    # the images start from the champion the classes' part left, in both of its branches
    images, no_images = (components[pending[c]["componentRef"]["name"]]["dag"]["tasks"]
                         for c in ("condition-5", "condition-6"))
    assert pending["condition-5"]["dependentTasks"] == ["condition-branches-2"]
    assert "forget_ids_uri'] != ''" in pending["condition-5"]["triggerPolicy"]["condition"]
    assert "forget_ids_uri'] == ''" in pending["condition-6"]["triggerPolicy"]["condition"]
    alias = images["oblivio-unlearning-2"]["inputs"]["parameters"]["model_alias"]
    assert alias["componentInputParameter"].endswith("oneof-1")
    assert images["complete-batch"]["dependentTasks"] == ["oblivio-unlearning-2"]
    assert set(no_images) == {"complete-batch-2"}
    # every run of the unlearning pipeline registers under its part's key
    for task in (classes["oblivio-unlearning"], images["oblivio-unlearning-2"]):
        key = task["inputs"]["parameters"]["deletion_batch"]["componentInputParameter"]
        assert key.endswith(("classes_key", "ids_key"))
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in ("exec-claim-batch", "exec-settle-batch", "exec-settle-batch-2",
                 "exec-complete-batch", "exec-complete-batch-2"):
        ledger = [s for s in executors[name]["secretAsEnv"] if s["keyToEnv"] == [LEDGER]]
        assert ledger and ledger[0]["optional"] is False, name
    assert not any(s["keyToEnv"] == [LEDGER] for s in executors["exec-register-model"][
        "secretAsEnv"])
