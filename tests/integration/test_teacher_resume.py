"""A generation run killed midway and started again with the same command: every input
row comes out exactly once (Ray Data checkpointing by request id, a real local cluster)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.integration


def _generate_command(out, dss_data) -> list[str]:
    return [
        sys.executable,
        "-m",
        "raydsbs",
        "generate",
        "tests/integration/tiny.yaml",
        f"output_dir={out}",
        "tag=resume",
        "task.name=cqa",
        f"task.data_dir={dss_data / 'cqa'}",
        "task.num_train=20000",
        "task.num_val=200",
        "teacher.backend=replay",
        "teacher.rows_per_checkpoint=32",
    ]


def test_killed_generation_resumes_without_losing_or_repeating_rows(tmp_path, dss_data):
    command = _generate_command(tmp_path, dss_data)
    # A first run, killed (with its whole local Ray cluster) once some outputs are written.
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    written = []
    while time.time() < deadline and first.poll() is None:
        written = list(tmp_path.glob("resume-*/teacher/generations/*.parquet"))
        if len(written) >= 20:
            break
        time.sleep(0.2)
    assert first.poll() is None, "the first run finished before it could be killed"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    (run_dir,) = tmp_path.iterdir()
    assert not (run_dir / "teacher/generations/_SUCCESS").exists()
    assert not (run_dir / "teacher/distill.parquet").exists()
    done_before = pads.dataset(run_dir / "teacher/generations", format="parquet").count_rows()
    assert done_before > 0

    # The same command again finishes the rest.
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    train_ids = pq.read_table(run_dir / "corpus/train.parquet", columns=["id"])["id"].to_pylist()
    held_out = [
        i for split in ("val", "test") for i in pq.read_table(run_dir / f"corpus/{split}.parquet")["id"].to_pylist()
    ]
    generated = (
        pads.dataset(run_dir / "teacher/generations", format="parquet").to_table(columns=["id"])["id"].to_pylist()
    )
    assert sorted(generated) == sorted(train_ids + held_out)  # nothing lost, nothing generated twice
    kept = pq.read_table(run_dir / "teacher/distill.parquet", columns=["id"])["id"].to_pylist()
    rejected = pq.read_table(run_dir / "teacher/rejects.parquet", columns=["id"])["id"].to_pylist()
    assert sorted(kept + rejected) == sorted(train_ids)
    summary = json.loads((run_dir / "summary.json").read_text())["teacher"]
    assert summary["resumed"] is True and summary["rows"] == len(train_ids) == 9541
