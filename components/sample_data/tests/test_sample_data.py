from pathlib import Path

import pyarrow.parquet as pq
import pytest
from kfp import dsl

from oblivio.errors import OblivioError
from oblivio.tracking.registry import client
from oblivio.tracking.runs import run_id_of
from oblivio_pipeline.components import sample_data

SMALL = {"deletion_batch": "", "retain_per_class": 10, "forget_samples": 20, "val_per_class": 5,
         "val_forget_samples": 10, "seed": 0}


def test_class_request_draws_three_lists_and_logs_them(trained_rgb, job: str,
                                                        tmp_path: Path) -> None:
    data, model_dir = trained_rgb
    samples = dsl.Dataset(uri=str(tmp_path / "samples"))
    sample_data.python_func(model=dsl.Model(uri=str(model_dir)), dataset_uri=str(data),
                            forget_classes="1", forget_ids_uri="", job_id=job, samples=samples,
                            **SMALL)
    rows = {n: pq.read_table(tmp_path / "samples" / f"{n}.parquet").num_rows
            for n in ("retain", "forget", "validation")}
    assert rows == {"retain": 30, "forget": 20, "validation": 25}  # 3 kept classes
    assert samples.metadata["forget_classes"] == [1] and samples.metadata["retain"] == 30
    run = client().get_run(run_id_of(job))
    assert {d.dataset.name for d in run.inputs.dataset_inputs} == {
        "retain-samples", "forget-samples", "validation-samples"}


def test_deletion_request_is_checked_and_kept(trained_rgb, job: str, tmp_path: Path) -> None:
    data, model_dir = trained_rgb
    ids = tmp_path / "request.txt"
    ids.write_text("rgb/train/0000\nrgb/train/0061\n")
    samples = dsl.Dataset(uri=str(tmp_path / "samples"))
    sample_data.python_func(model=dsl.Model(uri=str(model_dir)), dataset_uri=str(data),
                            forget_classes="", forget_ids_uri=str(ids), job_id=job,
                            samples=samples, **SMALL)
    assert samples.metadata["mode"] == "instance" and samples.metadata["forget_ids_count"] == 2
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["forget.parquet",
                                                                        "plan.json"]
    # the run keeps the request's digest and size, never a copy of its ids
    run_id = run_id_of(job)
    assert [a.path for a in client().list_artifacts(run_id, "samples")] == ["samples/plan.json"]
    inputs = client().get_run(run_id).inputs.dataset_inputs
    assert [d.dataset.name for d in inputs] == ["forget-samples"]
    assert "rgb/train/0000" not in inputs[0].dataset.profile + inputs[0].dataset.schema
    ids.write_text("rgb/test/0001\n")
    with pytest.raises(OblivioError, match="test-split"):
        sample_data.python_func(model=dsl.Model(uri=str(model_dir)), dataset_uri=str(data),
                                forget_classes="", forget_ids_uri=str(ids), job_id=job,
                                samples=dsl.Dataset(uri=str(tmp_path / "bad")), **SMALL)
