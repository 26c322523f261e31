"""A run whose output_dir is a bucket on an S3 server (moto's, on 127.0.0.1: the stand-in for a cloud store):
killed mid-generation, started again with the same command, it completes, every request answered once, and
leaves every output, its report included, in the bucket and nothing on the local disk; its student, scored
again by Ray Data actors that read it from the bucket, gets the predictions the run wrote."""

from __future__ import annotations

import json

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from raydsbs.evaluate import score
from raydsbs.resolve import with_overrides
from raydsbs.rundir import RunDir
from raydsbs.staging import committed
from raydsbs.storage import local_copy, location
from raydsbs.student.learner import MODEL_SUBDIR
from tests.integration.helpers import REPO, Background, tensorboard_scalars

pytestmark = pytest.mark.integration


def _command(out: str, dss_data) -> list[str]:
    return [
        "run",
        "tests/integration/tiny.yaml",
        f"output_dir={out}",
        "tag=stored",
        "task.name=cqa",
        f"task.data_dir={dss_data / 'cqa'}",
        "task.num_train=640",
        "task.num_val=20",
        "task.num_test=40",
        "teacher.backend=replay",
        "teacher.rows_per_checkpoint=32",
        "train.method=step_by_step",
        "train.num_workers=1",
        "train.max_steps=4",
        "train.eval_every_steps=2",
        "train.batch_size=16",
        "sweep.grid={train.seed: [0]}",  # Tune's experiment in the bucket too (its one trial finds the model)
    ]


def _ids(folder, column: str = "id") -> list[str]:
    return (
        pads.dataset(folder.path, filesystem=folder.fs, format="parquet").to_table(columns=[column])[column].to_pylist()
    )


def test_a_run_in_a_bucket_killed_mid_generation_resumes_and_leaves_its_report_and_student_there(
    bucket, tmp_path, dss_data
):
    runs = location(f"{bucket}/runs")
    generations = lambda: runs.glob("*/teacher/generations/*.parquet")  # noqa: E731
    first = Background(*_command(str(runs), dss_data), log=tmp_path / "first.log")
    first.wait_for(lambda: len(generations()) >= 4, "the first generations in the bucket", timeout=240)
    first.kill()
    (run,) = runs.iterdir()
    assert not (run / "teacher/generations/_SUCCESS").exists() and not (run / "teacher/distill.parquet").exists()
    assert 0 < len(_ids(run / "teacher/generations")) < 640

    returncode, output = Background(*_command(str(runs), dss_data), log=tmp_path / "again.log").finish()
    assert returncode == 0, output[-6000:]
    assert f"report: {run}/report.md" in output

    corpus = run / "corpus"
    train_ids = _ids(corpus / "train.parquet")
    held_out = _ids(corpus / "val.parquet") + _ids(corpus / "test.parquet")
    assert sorted(_ids(run / "teacher/generations")) == sorted(train_ids + held_out)  # each request once
    kept, rejected = _ids(run / "teacher/distill.parquet"), _ids(run / "teacher/rejects.parquet")
    assert sorted(kept + rejected) == sorted(train_ids)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["teacher"]["resumed"] is True and summary["teacher"]["rows"] == len(train_ids)
    (training,) = list((run / "student").glob("step_by_step-*"))
    for folder in (corpus, run / "teacher/requests", run / "student/tokenizer", training / "model"):
        assert committed(folder), folder
    (tokenized,) = (run / "student/tokenized").iterdir()
    assert committed(tokenized)
    # the training's TensorBoard events, written locally by rank 0 and uploaded at each checkpoint
    final_step = json.loads((training / "training.json").read_text())["final_step"]
    curves = tensorboard_scalars(local_copy(run / "tensorboard" / training.name))
    assert [step for step, _ in curves["step/loss"]] == list(range(1, final_step + 1))
    metrics = json.loads((training / "metrics.json").read_text())
    predictions = pq.read_table((training / "predictions.parquet").path, filesystem=run.fs)
    assert predictions.num_rows == 60 and metrics["test_accuracy"] == round(
        sum(predictions.filter(pads.field("split") == "test")["correct"].to_pylist()) / 40, 4
    )
    (sweep,) = json.loads((run / "sweep/results.json").read_text())
    assert sweep["training"] == training.name and len(run.glob("sweep/trials-*/tuner.pkl")) == 1
    report = (run / "report.md").read_text()
    assert "step_by_step" in report and (run / "plots/accuracy_vs_fraction.png").is_file()
    assert not list(REPO.glob("s3*")) and not list(tmp_path.glob("s3*"))  # no local folder named after the URI

    # The report command reads the run directory from the bucket by its URI.
    returncode, output = Background("report", str(run), log=tmp_path / "report.log").finish()
    assert returncode == 0 and "step_by_step" in output, output[-3000:]

    # Scored again by a Ray Data stage of two actors (eval.actors, what GPU runs do by default: a copy of the
    # student per training worker's device), each reading the model from the bucket: exactly the figures and
    # the predictions the run's own scoring (in the driver's process) wrote.
    import ray

    config = with_overrides(RunDir(run).load_config(), {"eval.actors": 2})  # a split each: 20 val, 40 test rows
    try:
        scores, rows = score(config, RunDir(run), training / MODEL_SUBDIR)
    finally:
        ray.shutdown()
    assert rows == predictions.to_pylist() and [row["id"] for row in rows] == held_out
    figures = {key: value for key, value in scores.items() if key != "scoring"}  # its time and resources differ
    assert figures == {key: metrics[key] for key in figures} and scores["scoring"]["answers"] == 60
