import json
from pathlib import Path

from kfp import dsl

from oblivio.tracking.registry import client
from oblivio.tracking.runs import run_id_of
from oblivio_pipeline.components import evaluate_model


def test_judges_what_the_model_forgot_and_logs_it(trained_rgb, projected: Path, job: str,
                                                  tmp_path: Path) -> None:
    data, model_dir = trained_rgb
    metrics = dsl.Metrics(uri=str(tmp_path / "metrics"))
    summary, html = tmp_path / "summary.md", tmp_path / "report.html"
    evaluate_model.python_func(original=dsl.Model(uri=str(model_dir)),
                               unlearned=dsl.Model(uri=str(projected)), dataset_uri=str(data),
                               device="cpu", job_id=job, deletion_batch="", metrics=metrics,
                               report=dsl.Artifact(uri=str(tmp_path / "report")),
                               summary=dsl.Markdown(uri=str(summary)),
                               html=dsl.HTML(uri=str(html)))
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["mode"] == "class" and report["forget_classes"] == [1]  # from provenance
    assert metrics.metadata["forget_test_acc"] == report["forget_test_acc"]
    assert "original_retain_test_acc" in metrics.metadata
    assert "forget_test_acc" in summary.read_text() and html.read_text().startswith("<!")
    run = client().get_run(run_id_of(job))
    assert run.data.metrics["forget_test_acc"] == report["forget_test_acc"]
    assert {a.path for a in client().list_artifacts(run.info.run_id, "report")} >= {
        "report/report.json", "report/report.html"}
