"""A sweep killed midway (driver, Ray and trials) and started again with the same command: Tuner.restore
picks it up, the finished training is not redone, and the missing ones are trained."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SWEEP = ["sweep", "jobs/quickstart.yaml", "tag=sweep", "train.method=standard_finetune", "train.epochs=2",
         "sweep.grid={train.train_fraction: [0.5, 1.0]}"]


def _start(out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "raydsbs", *SWEEP, f"output_dir={out}"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _models(out: Path) -> list[Path]:
    return sorted(out.glob("*/student/standard_finetune-*/model/config.json"))


def test_a_killed_sweep_resumes_and_trains_only_what_is_missing(tmp_path):
    process = _start(tmp_path)
    deadline = time.monotonic() + 600
    while not (_models(tmp_path) and list(tmp_path.glob("*/sweep/trials-*/experiment_state*.json"))):
        assert process.poll() is None, process.stdout.read()[-4000:]
        assert time.monotonic() < deadline, "the first trial did not finish in time"
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    (first,) = _models(tmp_path)
    trained_at = first.stat().st_mtime

    output, _ = _start(tmp_path).communicate(timeout=900)
    assert "restoring it" in output, output[-4000:]
    assert len(_models(tmp_path)) == 2
    assert first.stat().st_mtime == trained_at  # the finished training was kept, not redone
    (results,) = tmp_path.glob("*/sweep/results.json")
    assert sorted(r["train_fraction"] for r in json.loads(results.read_text())) == [0.5, 1.0]
