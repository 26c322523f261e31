"""The paper's released PaLM completions, replayed through the teacher stage on Ray Data."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.integration


def generate(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "raydsbs", "generate", *args],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]


def test_svamp_replay_generates_a_distillation_set(tmp_path, dss_data):
    generate("jobs/quickstart.yaml", f"output_dir={tmp_path}", "task.name=svamp", f"task.data_dir={dss_data / 'svamp'}",
             "task.num_train=1000", "task.num_val=100", "teacher.backend=replay")
    (run_dir,) = tmp_path.iterdir()
    kept = pq.read_table(run_dir / "teacher/distill.parquet").to_pylist()
    rejected = pq.read_table(run_dir / "teacher/rejects.parquet").to_pylist()
    assert len(kept) + len(rejected) == 700  # 800 train rows less 100 for validation
    assert {r["reason"] for r in rejected} <= {"no_answer_stated", "unparsable_answer"}
    assert all("\nQ:" not in r["rationale"] for r in kept)
    summary = json.loads((run_dir / "summary.json").read_text())["teacher"]
    assert 0.7 < summary["teacher_accuracy_train"] < 0.85

    # A run stopped after every completion was written but before the selection
    # reruns to the same rows, from the written generations.
    (run_dir / "teacher/distill.parquet").unlink()
    (run_dir / "teacher/rejects.parquet").unlink()
    generate(str(run_dir))
    again = pq.read_table(run_dir / "teacher/distill.parquet").to_pylist()
    assert again == kept
