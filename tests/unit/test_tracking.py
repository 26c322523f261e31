"""Tracking without a cluster: rank 0's TensorBoard events (a resumed attempt's purge) and W&B runs (offline),
read back with TensorBoard's and W&B's own formats; the other ranks log nothing."""

from __future__ import annotations

import os
import time

import pytest

from raydsbs.config import Config
from raydsbs.resolve import with_overrides
from raydsbs.rundir import RunDir
from raydsbs.storage import location
from raydsbs.tracking import TrainingLog, log_scored, wandb_run_id, worker_env
from tests.integration.helpers import tensorboard_scalars, wandb_offline_runs


def _losses(value: float) -> dict:
    return {"train_loss": value, "train_label_loss": value / 2, "train_rationale_loss": value / 2}


def _train(log: TrainingLog, steps: range, offset: float = 0.0) -> None:
    for step in steps:
        log.step(step, _losses(10.0 - step + offset))
        if step % 3 == 0:
            log.checkpoint({"step": step, "epoch": 0, "val_label_loss": 5.0 - step + offset, "note": "text"})


def test_tensorboard_shows_each_step_once_after_a_resume(tmp_path):
    run = RunDir(tmp_path / "run")
    config = Config()
    first = TrainingLog(config, run, "t", rank=0)
    _train(first, range(1, 6))  # killed after step 5; its last checkpoint was at step 3
    first.close()
    time.sleep(1.1)  # the next attempt's file sorts after this one's (its name starts with the time)
    again = TrainingLog(config, run, "t", rank=0, resumed_step=3)
    _train(again, range(4, 8), offset=100.0)
    again.close()
    curves = tensorboard_scalars(run.root.local_path() / "tensorboard" / "t")
    assert curves["step/loss"] == [(1, 9.0), (2, 8.0), (3, 7.0), (4, 106.0), (5, 105.0), (6, 104.0), (7, 103.0)]
    assert curves["step/label_loss"][0] == (1, 4.5)
    assert curves["val_label_loss"] == [(3, 2.0), (6, 99.0)]
    assert "note" not in curves  # only numbers are logged


def test_ranks_other_than_0_log_nothing(tmp_path):
    config = with_overrides(Config(), {"tracking.wandb_project": "p", "tracking.mlflow_uri": "file:///nowhere"})
    log = TrainingLog(config, RunDir(tmp_path / "run"), "t", rank=1)
    _train(log, range(1, 4))
    log.close()
    assert log.tensorboard is log.mlflow is log.wandb is None and not (tmp_path / "run").exists()


def test_tensorboard_is_off_when_asked(tmp_path):
    config = with_overrides(Config(), {"tracking.tensorboard": False})
    log = TrainingLog(config, RunDir(tmp_path / "run"), "t", rank=0)
    _train(log, range(1, 4))
    log.close()
    assert not (tmp_path / "run").exists()


def test_a_wandb_run_per_training_resumed_by_its_id_and_given_its_scores(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = with_overrides(Config(), {"tracking.wandb_project": "p", "tracking.tensorboard": False})
    run = RunDir(tmp_path / "run")
    try:
        log = TrainingLog(config, run, "t", rank=0)
        _train(log, range(1, 4))
        log.close()
        log_scored(config, run, run.training("t"), {"val_accuracy": 0.5, "test_accuracy": 0.25}, run.training("t"))
        # W&B's own variables, set in this process now, never go to the workers
        assert set(worker_env(config)) == {"WANDB_MODE", "WANDB_SILENT"}
    finally:
        import wandb

        wandb.teardown()  # its service process, and the variable naming it
        os.environ.pop("WANDB_SERVICE", None)
    runs = wandb_offline_runs(tmp_path / "run" / "wandb")
    assert [r["id"] for r in runs] == [wandb_run_id(run, "t")] * 2  # the scores resume the training's run
    trained, scored = runs
    assert trained["name"] == "t" and trained["group"] == "run" and trained["project"] == "p"
    assert trained["config"]["train.method"] == config.train.method
    assert trained["history"][3]["step/loss"] == 7.0 and trained["history"][3]["val_label_loss"] == 2.0
    assert sorted(trained["history"]) == [1, 2, 3]
    assert scored["summary"]["test_accuracy"] == 0.25


def test_wandb_ids_are_per_run_directory_and_training():
    a, b = RunDir(location("/runs/a")), RunDir(location("/elsewhere/a"))
    assert wandb_run_id(a, "t") == wandb_run_id(RunDir(location("/runs/a")), "t")
    assert len({wandb_run_id(a, "t"), wandb_run_id(b, "t"), wandb_run_id(a, "u")}) == 3


@pytest.mark.parametrize("project", [None, "p"])
def test_the_workers_get_the_drivers_wandb_settings_only_when_wandb_is_on(monkeypatch, project):
    for key in [key for key in os.environ if key.startswith("WANDB")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", "k")
    monkeypatch.setenv("WANDB_SERVICE", "a socket of this process")
    monkeypatch.setenv("OTHER", "x")
    env = worker_env(with_overrides(Config(), {"tracking.wandb_project": project}))
    assert env == ({"WANDB_MODE": "offline", "WANDB_API_KEY": "k"} if project else {})


def test_doctor_names_what_keeps_each_tracker_from_logging_and_the_fix(tmp_path, monkeypatch):
    from raydsbs.tracking import tracking_problems

    for key in [key for key in os.environ if key.startswith(("WANDB", "MLFLOW"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc with a W&B login
    config = with_overrides(
        Config(), {"tracking.mlflow_uri": f"file://{tmp_path}/mlruns", "tracking.wandb_project": "p"}
    )
    problems = dict(tracking_problems(config))
    assert problems == {
        f"tracking.mlflow_uri=file://{tmp_path}/mlruns: MLflow 3 refuses a file store unless "
        "MLFLOW_ALLOW_FILE_STORE=true": "export MLFLOW_ALLOW_FILE_STORE=true, or log to an MLflow server "
        "(http://host:5000)",
        "tracking.wandb_project=p: no W&B key": "export WANDB_API_KEY or run `wandb login`; or WANDB_MODE=offline "
        "keeps the runs on disk for `wandb sync`",
    }
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert tracking_problems(config) == []
    ((what, fix),) = tracking_problems(with_overrides(Config(), {"tracking.mlflow_uri": "http://127.0.0.1:9"}))
    assert what.startswith("tracking.mlflow_uri=http://127.0.0.1:9: no MLflow server answers") and "start it" in fix
    assert tracking_problems(Config()) == []


def test_a_resumed_training_goes_on_in_its_mlflow_run_which_gets_its_scores(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store for those who ask
    store = f"file://{tmp_path / 'mlruns'}"
    config = with_overrides(Config(), {"tracking.mlflow_uri": store, "tracking.tensorboard": False})
    run = RunDir(tmp_path / "run")
    first = TrainingLog(config, run, "t", rank=0)
    _train(first, range(1, 5))  # killed after step 4; its checkpoint was at step 3
    first.close()
    again = TrainingLog(config, run, "t", rank=0, resumed_step=3)
    _train(again, range(4, 8))
    again.close()
    assert "MLFLOW_RUN_ID" not in os.environ
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    log_scored(config, run, run.training("t"), {"test_accuracy": 0.25}, location(model))

    (logged,) = mlflow.search_runs(experiment_names=["run"], output_format="list")
    assert logged.data.tags["raydsbs.training"] == "t" and logged.data.params["train.method"] == config.train.method
    history = mlflow.MlflowClient().get_metric_history(logged.info.run_id, "val_label_loss")
    assert sorted(point.step for point in history) == [3, 6]
    assert logged.data.metrics["test_accuracy"] == 0.25
