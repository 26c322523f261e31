"""Training survives being stopped for real: a whole run (driver, Ray, workers) SIGKILLed and started
again with the same command, on a local Ray cluster with 2 DDP workers and a real T5. A worker lost
with its node mid-run is tested in test_multinode.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from transformers import AutoModelForSeq2SeqLM

from tests.integration.helpers import REPO, last_checkpoint_step

pytestmark = pytest.mark.integration

# standard_finetune needs no teacher; a checkpoint every 4 optimizer steps, 30 steps in all.
TRAIN = ["train", "jobs/quickstart.yaml", "train.method=standard_finetune", "train.epochs=3",
         "train.eval_every_steps=4", "train.batch_size=16", "tag=faults"]


def _start(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "raydsbs", *TRAIN, f"output_dir={out}", *extra], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_for_step(out: Path, process: subprocess.Popen, step: int, timeout: float = 300) -> None:
    """Until Ray Train has registered a checkpoint at ``step`` or later."""
    deadline = time.monotonic() + timeout
    while last_checkpoint_step(out) < step:
        assert process.poll() is None, f"training ended before step {step}:\n{process.stdout.read()[-4000:]}"
        assert time.monotonic() < deadline, "no checkpoints in time"
        time.sleep(0.5)


def _finish(process: subprocess.Popen, timeout: float = 600) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-6000:]
    return output


def _trained_student(out: Path) -> Path:
    (folder,) = [p for p in out.glob("*/student/standard_finetune-*") if (p / "training.json").is_file()]
    AutoModelForSeq2SeqLM.from_pretrained(folder / "model")  # a plain Hugging Face folder
    return folder


def test_a_stopped_run_resumes_with_the_same_command(tmp_path):
    process = _start(tmp_path)
    _wait_for_step(tmp_path, process, step=8)
    os.killpg(process.pid, signal.SIGKILL)  # the driver, Ray and its workers: everything stops
    process.wait()
    stopped_at = last_checkpoint_step(tmp_path)
    output = _finish(_start(tmp_path))
    assert "resumes from" in output, output[-5000:]
    first_step = min(int(line.split("step ")[1].split()[0]) for line in output.splitlines() if "| epoch " in line)
    assert first_step > stopped_at  # continued after the last checkpoint it had, not from the start
    _trained_student(tmp_path)
