"""What the served student's API accepts and what it refuses, with the reason and the HTTP status (the API
itself runs in tests/integration/test_pipeline.py, on the quickstart job's student)."""

from __future__ import annotations

import json

import pytest

from raydsbs.serve import BadRequest, parse_request


def test_a_request_is_an_input_and_whether_the_rationale_is_wanted():
    assert parse_request(b'{"input": "2 + 2?"}', 100) == ("2 + 2?", False)
    assert parse_request(json.dumps({"input": "Ünïcode?", "rationale": True}).encode(), 100) == ("Ünïcode?", True)


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"", 400, "not JSON"),
        (b"\xff\xfe", 400, "not JSON"),
        (b'"just text"', 400, "a JSON str; send an object"),
        (b"{}", 400, '"input" must be text, not missing'),
        (b'{"input": 7}', 400, '"input" must be text, not int'),
        (b'{"input": "  "}', 400, '"input" is empty'),
        (json.dumps({"input": "x" * 101}).encode(), 413, "101 characters; at most 100"),
        (b'{"input": "a", "rationale": 1}', 400, '"rationale" must be true or false, not 1'),
        (b'{"input": "a", "why": true}', 400, "unknown field(s) why"),
    ],
)
def test_a_bad_request_is_refused_with_its_status_and_reason(body, status, reason):
    with pytest.raises(BadRequest) as refused:
        parse_request(body, 100)
    assert refused.value.status == status and reason in str(refused.value)


def test_vllm_is_refused_for_a_t5_student_before_anything_starts(tmp_path, capsys):
    from raydsbs.cli import main
    from raydsbs.student.model import FORMAT_FILE

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "t5"}))
    (folder / FORMAT_FILE).write_text(json.dumps({"kind": "seq2seq", "task_marker": "input", "max_input_tokens": 8}))
    assert main(["serve", "--model", str(folder), "serve.engine=vllm"]) == 2
    error = capsys.readouterr().err
    assert "holds a seq2seq student; vLLM serves causal students only" in error
    assert "serve.engine=transformers serves both" in error
