import json
from pathlib import Path

import pytest
from kfp import dsl

from oblivio.evaluation.evaluate import evaluate_unlearned
from oblivio.tracking.registry import client
from oblivio.tracking.runs import run_id_of
from oblivio_pipeline.components import evaluate_model, predict_outputs


def test_judges_what_the_model_forgot_and_logs_it(trained_rgb, projected: Path, job: str,
                                                  tmp_path: Path) -> None:
    """On shards of the training split (two, then gathered), the report is what one pass
    over the whole split gives."""
    data, model_dir = trained_rgb
    metrics = dsl.Metrics(uri=str(tmp_path / "metrics"))
    summary, html = tmp_path / "summary.md", tmp_path / "report.html"
    parts = {role: [dsl.Artifact(uri=str(tmp_path / f"{role}{i}")) for i in range(2)]
             for role in ("original", "unlearned")}
    for i in range(2):
        predict_outputs.python_func(original=dsl.Model(uri=str(model_dir)),
                                    unlearned=dsl.Model(uri=str(projected)),
                                    dataset_uri=str(data), shard=i, shards=2, device="cpu",
                                    original_outputs=parts["original"][i],
                                    unlearned_outputs=parts["unlearned"][i])
    evaluate_model.python_func(original=dsl.Model(uri=str(model_dir)),
                               unlearned=dsl.Model(uri=str(projected)),
                               original_train=parts["original"],
                               unlearned_train=parts["unlearned"], dataset_uri=str(data),
                               forget_ids_uri="", device="cpu", job_id=job, deletion_batch="",
                               relearn_steps=4, metrics=metrics,
                               report=dsl.Artifact(uri=str(tmp_path / "report")),
                               summary=dsl.Markdown(uri=str(summary)),
                               html=dsl.HTML(uri=str(html)))
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    whole = evaluate_unlearned(str(projected), str(data), tmp_path / "whole", str(model_dir),
                               "cpu")
    for key in ("forget_test_acc", "retain_train_acc", "forget_train_acc",
                "mia_efficacy_confidence", "mia_loss_lr_cv_acc", "probe_forget_test_acc"):
        assert report[key] == pytest.approx(whole[key], abs=1e-6), key
    assert report["mode"] == "class" and report["forget_classes"] == [1]  # from provenance
    assert report["relearning"]["max_steps"] == 4 and "relearn_steps" in report
    assert list(report["models"]["original"]["relearn_curve"]) == ["0", "1", "2", "4"]
    assert metrics.metadata["relearn_forget_test_acc"] == report["relearn_forget_test_acc"]
    assert metrics.metadata["forget_test_acc"] == report["forget_test_acc"]
    assert "original_retain_test_acc" in metrics.metadata
    assert "forget_test_acc" in summary.read_text() and html.read_text().startswith("<!")
    run = client().get_run(run_id_of(job))
    assert run.data.metrics["forget_test_acc"] == report["forget_test_acc"]
    assert {a.path for a in client().list_artifacts(run.info.run_id, "report")} >= {
        "report/report.json", "report/report.html"}
