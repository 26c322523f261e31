"""Training survives faults for real: a Ray Train worker SIGKILLed mid-run, and a whole run stopped and
started again with the same command. Both on a local Ray cluster with 2 DDP workers and a real T5."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from transformers import AutoModelForSeq2SeqLM

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# standard_finetune needs no teacher; a checkpoint every 4 optimizer steps, 30 steps in all.
TRAIN = ["train", "jobs/quickstart.yaml", "train.method=standard_finetune", "train.epochs=3",
         "train.eval_every_steps=4", "train.batch_size=16", "tag=faults"]


def _start(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "raydsbs", *TRAIN, f"output_dir={out}", *extra], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _last_step(out: Path) -> int:
    """The step of the latest checkpoint Ray Train has registered (files on disk alone may not be, yet)."""
    steps = []
    for snapshot in out.glob("*/student/ray/*/checkpoint_manager_snapshot.json"):
        try:
            steps.append(json.loads(snapshot.read_text())["latest_checkpoint_result"]["metrics"]["step"])
        except (json.JSONDecodeError, KeyError, TypeError):
            pass  # being written, or nothing registered yet
    return max(steps, default=0)


def _wait_for_step(out: Path, process: subprocess.Popen, step: int, timeout: float = 300) -> None:
    """Until Ray Train has registered a checkpoint at ``step`` or later."""
    deadline = time.monotonic() + timeout
    while _last_step(out) < step:
        assert process.poll() is None, f"training ended before step {step}:\n{process.stdout.read()[-4000:]}"
        assert time.monotonic() < deadline, "no checkpoints in time"
        time.sleep(0.5)


def _busiest_train_worker(driver: subprocess.Popen) -> psutil.Process:
    """A Ray Train worker of this run (Ray's processes descend from the driver) that is training now."""
    workers = [p for p in psutil.Process(driver.pid).children(recursive=True)
               if "RayTrainWorker" in " ".join(p.cmdline())]
    assert workers, "no Ray Train worker found"
    return max(workers, key=lambda p: p.cpu_times().user)


def _finish(process: subprocess.Popen, timeout: float = 600) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-6000:]
    return output


def _trained_student(out: Path) -> Path:
    (folder,) = [p for p in out.glob("*/student/standard_finetune-*") if (p / "training.json").is_file()]
    AutoModelForSeq2SeqLM.from_pretrained(folder / "model")  # a plain Hugging Face folder
    return folder


def test_a_killed_worker_restarts_from_the_last_checkpoint(tmp_path):
    process = _start(tmp_path)
    _wait_for_step(tmp_path, process, step=8)
    victim = _busiest_train_worker(process)
    victim.send_signal(signal.SIGKILL)
    output = _finish(process)
    # the new worker group started from a checkpoint, not from step 0
    assert "resumes from" in output, f"killed {victim.pid}:\n{output[-5000:]}"
    folder = _trained_student(tmp_path)
    assert _last_step(tmp_path) == json.loads((folder / "training.json").read_text())["final_step"]


def test_a_stopped_run_resumes_with_the_same_command(tmp_path):
    process = _start(tmp_path)
    _wait_for_step(tmp_path, process, step=8)
    os.killpg(process.pid, signal.SIGKILL)  # the driver, Ray and its workers: everything stops
    process.wait()
    stopped_at = _last_step(tmp_path)
    output = _finish(_start(tmp_path))
    assert "resumes from" in output, output[-5000:]
    first_step = min(int(line.split("step ")[1].split()[0]) for line in output.splitlines() if "| epoch " in line)
    assert first_step > stopped_at  # continued after the last checkpoint it had, not from the start
    _trained_student(tmp_path)
