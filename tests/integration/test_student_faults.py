"""Training survives being stopped for real: a whole run (driver, Ray, workers) SIGKILLed and started
again with the same command, on a local Ray cluster with 2 DDP workers and a real T5. A worker lost
with its node mid-run is tested in test_multinode.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoModelForSeq2SeqLM

from tests.integration.helpers import Background, last_checkpoint_step

pytestmark = pytest.mark.integration

# standard_finetune needs no teacher; a checkpoint every 4 optimizer steps, 30 steps in all.
TRAIN = ["train", "jobs/quickstart.yaml", "train.method=standard_finetune", "train.epochs=3",
         "train.eval_every_steps=4", "train.batch_size=16", "tag=faults"]


def _trained_student(out: Path) -> Path:
    (folder,) = [p for p in out.glob("*/student/standard_finetune-*") if (p / "training.json").is_file()]
    AutoModelForSeq2SeqLM.from_pretrained(folder / "model")  # a plain Hugging Face folder
    return folder


def test_a_stopped_run_resumes_with_the_same_command(tmp_path):
    first = Background(*TRAIN, f"output_dir={tmp_path / 'runs'}", log=tmp_path / "first.log")
    first.wait_for(lambda: last_checkpoint_step(tmp_path / "runs") >= 8, "a checkpoint at step 8")
    first.kill()  # the driver, Ray and its workers: everything stops
    stopped_at = last_checkpoint_step(tmp_path / "runs")
    returncode, output = Background(*TRAIN, f"output_dir={tmp_path / 'runs'}", log=tmp_path / "again.log").finish()
    assert returncode == 0, output[-6000:]
    assert "resumes from" in output, output[-5000:]
    first_step = min(int(line.split("step ")[1].split()[0]) for line in output.splitlines() if "| epoch " in line)
    assert first_step > stopped_at  # continued after the last checkpoint it had, not from the start
    _trained_student(tmp_path / "runs")
