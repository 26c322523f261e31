"""Sweeps for real. One killed midway (driver, Ray and trials) and started again with the same command:
Tuner.restore picks it up, the finished training is not redone, and the missing ones are trained. One
with the ASHA scheduler: the trial whose validation loss trails is stopped early and leaves no result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

from tests.integration.helpers import REPO, Background

SWEEP = ["sweep", "jobs/quickstart.yaml", "tag=sweep", "train.method=standard_finetune", "train.epochs=2",
         "sweep.grid={train.train_fraction: [0.5, 1.0]}"]


def _start(out: Path, log: str) -> Background:
    return Background(*SWEEP, f"output_dir={out / 'runs'}", log=out / log)


def _models(out: Path) -> list[Path]:
    return sorted(out.glob("runs/*/student/standard_finetune-*/model/config.json"))


def test_a_killed_sweep_resumes_and_trains_only_what_is_missing(tmp_path):
    first_run = _start(tmp_path, "first.log")
    first_run.wait_for(lambda: _models(tmp_path) and list(tmp_path.glob("runs/*/sweep/trials-*/experiment_state*.json")),
                       "the first trial's model", timeout=600)
    first_run.kill()
    (first,) = _models(tmp_path)
    trained_at = first.stat().st_mtime

    returncode, output = _start(tmp_path, "again.log").finish()
    assert returncode == 0 and "restoring it" in output, output[-4000:]
    assert len(_models(tmp_path)) == 2
    assert first.stat().st_mtime == trained_at  # the finished training was kept, not redone
    (results,) = tmp_path.glob("runs/*/sweep/results.json")
    assert sorted(r["train_fraction"] for r in json.loads(results.read_text())) == [0.5, 1.0]


def test_asha_stops_the_trial_that_trails(tmp_path):
    # Two trials in order: a learning rate that learns, then one that barely moves. Each reports its
    # validation label loss every 2 steps; at the first rung the second trails the first and stops.
    command = [sys.executable, "-m", "raydsbs", "sweep", "jobs/quickstart.yaml", f"output_dir={tmp_path}",
               "tag=asha", "train.method=standard_finetune", "train.epochs=1", "train.eval_every_steps=2",
               "sweep.scheduler=asha", "sweep.grace_reports=1", "sweep.grid={train.learning_rate: [3.0e-3, 1.0e-8]}"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (run_dir,) = tmp_path.iterdir()
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
