"""Sweeps for real. One killed midway (driver, Ray, trials and their Ray Train workers, all SIGKILLed) and
started again with the same command: Tuner.restore picks it up, the finished training is kept, the
interrupted one goes on from its last checkpoint, and the results have both; its four grid points are two
trainings (standard fine-tuning ignores the label source), each trained once. Trials side by side run in
the quickstart job (test_pipeline.py). One with the ASHA scheduler:
the trial whose validation loss trails is stopped early and leaves no result. A training worker lost
with its node mid-run is tested in test_multinode.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForSeq2SeqLM

from tests.integration.helpers import (
    REPO,
    Background,
    last_checkpoint_step,
    tensorboard_scalars,
    wandb_offline_runs,
)

pytestmark = pytest.mark.integration

# standard_finetune needs no teacher. One worker (two DDP workers resume in test_multinode.py), batches of
# 64: 3 optimizer steps an epoch on half the 320 training rows, 5 on all of them; a checkpoint every 4
# steps and at the end.
SWEEP = [
    "sweep",
    "tests/integration/tiny.yaml",
    "tag=sweep",
    "train.method=standard_finetune",
    "train.epochs=3",
    "train.num_workers=1",
    "train.batch_size=64",
    "train.eval_every_steps=4",
    # standard_finetune ignores train.label_source: 4 grid points, 2 trainings, each trained once
    "sweep.grid={train.label_source: [gold, teacher], train.train_fraction: [0.5, 1.0]}",
]


def _start(out: Path, log: str) -> Background:
    return Background(*SWEEP, f"output_dir={out / 'runs'}", log=out / log)


def _models(out: Path) -> list[Path]:
    return sorted(out.glob("runs/*/student/standard_finetune-*/model/config.json"))


def test_a_killed_sweep_keeps_what_finished_and_resumes_what_was_interrupted(tmp_path):
    runs = tmp_path / "runs"
    first_run = _start(tmp_path, "first.log")
    # The trials run one at a time: the half-data one first, then the full one.
    first_run.wait_for(
        lambda: _models(tmp_path) and last_checkpoint_step(runs, "standard_finetune-f1-*") >= 8,
        "the first trial's model and the second's checkpoint at step 8",
        timeout=600,
    )
    first_run.kill()
    (first,) = _models(tmp_path)
    trained_at = first.stat().st_mtime
    stopped_at = last_checkpoint_step(runs, "standard_finetune-f1-*")

    returncode, output = _start(tmp_path, "again.log").finish()
    assert returncode == 0 and "restoring it" in output, output[-4000:]
    assert "resumes from" in output, output[-5000:]  # the interrupted training, from its checkpoint
    steps = [int(line.split("step ")[1].split()[0]) for line in output.splitlines() if "| epoch " in line]
    assert steps and min(steps) > stopped_at, steps  # went on after its last checkpoint, not from the start
    assert first.stat().st_mtime == trained_at  # the finished training was kept, not redone
    models = _models(tmp_path)
    assert len(models) == 2
    for model in models:
        AutoModelForSeq2SeqLM.from_pretrained(model.parent)  # plain Hugging Face folders
    assert "4 grid points are 2 distinct trainings" in output
    (run_dir,) = runs.iterdir()
    results = json.loads((run_dir / "sweep/results.json").read_text())
    assert sorted(r["train_fraction"] for r in results) == [0.5, 1.0]
    for result in results:  # each training's result stands for both label sources it ignores
        assert sorted(p["train.label_source"] for p in result["grid_points"]) == ["gold", "teacher"]
    assert json.loads((run_dir / "summary.json").read_text())["sweep"]["trials"] == 2
    trained = sorted(p.name for p in (run_dir / "student").glob("standard_finetune-*") if (p / "model").is_dir())
    assert trained == sorted(r["training"] for r in results)
    # TensorBoard shows the interrupted training's every step once: what the killed attempt logged after its
    # checkpoint is purged by the resumed one's event file.
    for training in trained:
        final_step = json.loads((run_dir / "student" / training / "training.json").read_text())["final_step"]
        curves = tensorboard_scalars(run_dir / "tensorboard" / training)
        assert [step for step, _ in curves["step/loss"]] == list(range(1, final_step + 1)), training


def test_asha_stops_the_trial_that_trails_and_the_trackers_hold_each_training_and_trial(tmp_path, monkeypatch):
    # Two trials in order: a learning rate that learns, then one that barely moves. Each (one worker, 5
    # steps of 64 rows) reports its validation label loss every 2 steps; at the first rung the second
    # trails the first and stops. Tracked in an MLflow file store (tracking.mlflow_uri), TensorBoard event
    # files (on by default) and W&B offline (tracking.wandb_project).
    store = f"file://{tmp_path / 'mlruns'}"
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store for those who ask
    monkeypatch.setenv("WANDB_MODE", "offline")
    command = [
        sys.executable,
        "-m",
        "raydsbs",
        "sweep",
        "tests/integration/tiny.yaml",
        f"output_dir={tmp_path / 'runs'}",
        "tag=asha",
        "train.method=standard_finetune",
        "train.epochs=1",
        "train.eval_every_steps=2",
        "train.num_workers=1",
        "train.batch_size=64",
        "sweep.scheduler=asha",
        "sweep.grace_reports=1",
        "sweep.grid={train.learning_rate: [3.0e-3, 1.0e-8]}",
        f"tracking.mlflow_uri={store}",
        "tracking.experiment=asha",
        "tracking.wandb_project=raydsbs-test",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    results = json.loads((run_dir / "sweep/results.json").read_text())
    assert len(results) == 1  # the stopped trial has no final result
    summary = json.loads((run_dir / "summary.json").read_text())["sweep"]
    assert summary == {"trials": 2, "failed": 0, "stopped_early": 1}
    trained = [p for p in (run_dir / "student").glob("standard_finetune-*") if (p / "model/config.json").is_file()]
    assert [p.name for p in trained] == [results[0]["training"]]
    assert "report:" in result.stdout and (run_dir / "report.md").is_file()  # one sweep command ends in the report
    # The trials share one tokenized dataset, written by the sweep before Tune started.
    (tokenized,) = (run_dir / "student/tokenized").iterdir()
    (tuner,) = run_dir.glob("sweep/trials-*/tuner.pkl")
    assert (tokenized / "train.parquet").stat().st_mtime < tuner.stat().st_mtime

    # MLflow: a run per training with its config and every checkpoint's metrics; the finished one also its
    # scores and its model folder; and Tune's run per trial in the sweep's experiment.
    import mlflow

    mlflow.set_tracking_uri(store)
    runs = {
        r.data.tags["raydsbs.training"]: r for r in mlflow.search_runs(experiment_names=["asha"], output_format="list")
    }
    assert len(runs) == 2 and results[0]["training"] in runs
    finished = runs[results[0]["training"]]
    assert finished.data.params["train.method"] == "standard_finetune"
    assert finished.data.metrics["test_accuracy"] == results[0]["test_accuracy"]
    history = mlflow.MlflowClient().get_metric_history(finished.info.run_id, "val_label_loss")
    assert sorted(point.step for point in history) == [2, 4, 5]
    artifacts = [a.path for a in mlflow.MlflowClient().list_artifacts(finished.info.run_id, "model")]
    assert "model/config.json" in artifacts
    (stopped,) = [r for name, r in runs.items() if name != results[0]["training"]]
    assert "test_accuracy" not in stopped.data.metrics  # ASHA stopped it: never scored
    trials = mlflow.search_runs(experiment_names=["asha-sweep"], output_format="list")
    assert len(trials) == 2

    # TensorBoard: each training's every step and checkpoint in <run>/tensorboard/<training>/; Tune's own events
    # in each trial's folder.
    finished_name = results[0]["training"]
    curves = tensorboard_scalars(run_dir / "tensorboard" / finished_name)
    assert [step for step, _ in curves["val_label_loss"]] == [2, 4, 5]
    assert [step for step, _ in curves["step/loss"]] == [1, 2, 3, 4, 5]
    assert curves["val_label_loss"][-1][1] == pytest.approx(max(history, key=lambda point: point.step).value)
    stopped_curves = tensorboard_scalars(run_dir / "tensorboard" / stopped.data.tags["raydsbs.training"])
    stopped_steps = [step for step, _ in stopped_curves["val_label_loss"]]
    assert stopped_steps in ([2], [2, 4])  # stopped at the rung, by the time Tune has acted on it
    assert len(list(run_dir.glob("sweep/trials-*/*/events.out.tfevents.*"))) == 2

    # W&B (offline, in <run>/wandb/): the training's run with its config, every step's and checkpoint's
    # metrics, and its scores in the summary (one more offline run of the same id, as W&B resumes it); a run
    # per trial. (The ASHA-stopped training's W&B process is killed with it, often before it wrote a record.)
    tracked = wandb_offline_runs(run_dir / "wandb")
    finished_runs = [r for r in tracked if r.get("name") == finished_name]
    assert len({r["id"] for r in finished_runs}) == 1 and {r["group"] for r in finished_runs} == {"asha"}
    logged = next(r for r in finished_runs if r["history"])
    assert logged["config"]["train.method"] == "standard_finetune"
    assert sorted(s for s, values in logged["history"].items() if "val_label_loss" in values) == [2, 4, 5]
    assert sorted(s for s, values in logged["history"].items() if "step/loss" in values) == [1, 2, 3, 4, 5]
    scored = [r["summary"]["test_accuracy"] for r in finished_runs if "test_accuracy" in r["summary"]]
    assert scored == [results[0]["test_accuracy"]]
    assert len([r for r in tracked if r.get("group") == "asha-sweep"]) == 2
