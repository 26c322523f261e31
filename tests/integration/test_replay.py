"""The paper's released PaLM completions, replayed through the teacher stage on Ray Data."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.integration


def _teacher_metrics(port: int) -> dict[str, list[str]]:
    """The ``ray_raydsbs_teacher*`` lines of the node's Prometheus endpoint (what the Ray dashboard reads),
    once the parse stage's counters have arrived there."""
    found = {}
    for _ in range(60):
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        found = {}
        for line in text.splitlines():
            if line.startswith("ray_raydsbs_teacher"):
                found.setdefault(line.split("{")[0], []).append(line)
        wanted = ("samples_total", "rejected_samples_total", "generated_tokens_per_s")
        if all(f"ray_raydsbs_teacher_{name}" in found for name in wanted):  # they arrive one by one
            break
        time.sleep(1)
    return found


def test_svamp_replay_generates_a_distillation_set_and_shows_its_progress_as_ray_metrics(tmp_path, dss_data):
    import ray

    from raydsbs.data.corpus import write_corpus
    from raydsbs.resolve import load_config
    from raydsbs.rundir import open_run
    from raydsbs.teacher.pipeline import generate

    config = load_config(
        "tests/integration/tiny.yaml",
        [
            f"output_dir={tmp_path}",
            "task.name=svamp",
            f"task.data_dir={dss_data / 'svamp'}",
            "task.num_train=1000",
            "task.num_val=100",
            "task.num_test=200",
            "teacher.backend=replay",
        ],
    )
    run = open_run(config)
    write_corpus(config.task, run, config.ray)
    ray.init(address="local", num_cpus=4)
    try:
        summary = generate(config, run)
        (node,) = ray.nodes()
        found = _teacher_metrics(node["MetricsExportPort"])
    finally:
        ray.shutdown()
    (samples,) = found["ray_raydsbs_teacher_samples_total"]
    # every sample parsed: the train rows', and the val and test rows' the teacher answered to be scored
    assert samples.endswith(f" {float(summary['rows'] + summary['teacher_rows_val'] + summary['teacher_rows_test'])}")
    assert any('reason="no_answer_stated"' in line for line in found["ray_raydsbs_teacher_rejected_samples_total"])
    assert "ray_raydsbs_teacher_generated_tokens_per_s" in found

    kept = pq.read_table(run.root / "teacher/distill.parquet").to_pylist()
    rejected = pq.read_table(run.root / "teacher/rejects.parquet").to_pylist()
    assert len(kept) + len(rejected) == 700  # 800 train rows less 100 for validation
    assert {r["reason"] for r in rejected} <= {"no_answer_stated", "unparsable_answer"}
    assert all("\nQ:" not in r["rationale"] for r in kept)
    written = json.loads((run.root / "summary.json").read_text())["teacher"]
    assert 0.7 < written["teacher_accuracy_train"] < 0.85
    assert written["teacher_accuracy_test"] == 0.775  # all 200 test rows; the authors' parser gives 0.740

    # A run stopped after every completion was written but before the selection
    # reruns to the same rows, from the written generations (`raydsbs generate RUN_DIR`).
    (run.root / "teacher/distill.parquet").remove()
    (run.root / "teacher/rejects.parquet").remove()
    result = subprocess.run(
        [sys.executable, "-m", "raydsbs", "generate", str(run.root)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert pq.read_table(run.root / "teacher/distill.parquet").to_pylist() == kept
