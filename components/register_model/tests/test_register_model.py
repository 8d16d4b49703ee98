import json
import shutil
from pathlib import Path

from kfp import dsl

from oblivio.evaluation.evaluate import evaluate_unlearned
from oblivio.tracking.registry import CHAMPION, client
from oblivio.tracking.runs import log_report, run_key, start_run
from oblivio_pipeline.components import register_model


def test_registers_with_lineage_and_promotes_through_the_gates(
        trained_rgb, projected: Path, registered: str, job: str, tmp_path: Path) -> None:
    data, model_dir = trained_rgb
    evaluate_unlearned(str(projected), str(data), tmp_path / "report", str(model_dir), "cpu")
    # the same version as if its edit had left the class half recognised
    shutil.copytree(tmp_path / "report", tmp_path / "unforgotten")
    report = json.loads((tmp_path / "unforgotten" / "report.json").read_text())
    (tmp_path / "unforgotten" / "report.json").write_text(json.dumps(
        {**report, "forget_test_acc": 0.5}))

    def register(max_forget_acc: float, batch: str, promote: bool = True,
                 report: str = "report") -> str:
        # what resolve_model and evaluate_model leave: the batch part's own run in the job
        start_run(run_key(job, batch), "oblivio-unlearning-1", {})
        log_report(run_key(job, batch), str(tmp_path / report))
        return register_model.python_func(
            unlearned=dsl.Model(uri=str(projected)),
            report=dsl.Artifact(uri=str(tmp_path / report)), model_name=registered,
            parent_version="1", deletion_batch=batch, max_forget_acc=max_forget_acc,
            max_retain_drop=1.0, min_mia_efficacy=0.0, max_reestimated_forget_acc=1.0,
            instance_max_test_drop=0.005,
            instance_auc_z=2.576, instance_auc_one_sided=False, promote=promote, job_id=job,
            job_name="oblivio-unlearning-1")

    assert register(0.01, "batch-6", report="unforgotten") == "2"  # the gate fails it
    failed = client().get_model_version(registered, "2")
    assert failed.tags["oblivio.gate"].startswith("failed")
    assert str(client().get_model_version_by_alias(registered, CHAMPION).version) == "1"
    assert register(1.0, "batch-7") == "3"
    version = client().get_model_version(registered, "3")
    assert version.tags["oblivio.parent_version"] == "1"
    assert version.tags["oblivio.forget_classes"] == "1"
    assert version.tags["oblivio.deletion_batch"] == "batch-7"
    assert version.tags["oblivio.gate"] == "passed"
    assert str(client().get_model_version_by_alias(registered, CHAMPION).version) == "3"
    # a re-run of a batch registered already (its run died before recording the outcome)
    # gets the same version back: no second one
    assert register(1.0, "batch-7") == "3"
    assert len(client().search_model_versions(f"name = '{registered}'")) == 3
    # registered but not promoted when the run died: the re-run promotes it
    assert register(1.0, "batch-8", promote=False) == "4"
    assert str(client().get_model_version_by_alias(registered, CHAMPION).version) == "3"
    assert register(1.0, "batch-8") == "4"
    assert str(client().get_model_version_by_alias(registered, CHAMPION).version) == "4"
