"""Model output is never executed, and a model's own code runs only when the config says so.

The answer evaluator gets hostile strings from hypothesis: whatever the text, it
returns a number or refuses, and nothing in the text ever runs.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raydsbs.config import StudentConfig
from raydsbs.tasks import get_task
from raydsbs.tasks.safe_eval import MAX_LENGTH, UnsafeExpression, evaluate_arithmetic, try_evaluate

# Python that would leave a trace if it ever ran: each payload creates MARKER.
MARKER = Path("/tmp/raydsbs-hostile-marker")
PAYLOADS = [
    f"__import__('pathlib').Path('{MARKER}').touch()",
    f"open('{MARKER}', 'w')",
    f"(lambda: __import__('os').system('touch {MARKER}'))()",
    "[c for c in ().__class__.__base__.__subclasses__()]",
    f"exec(\"open('{MARKER}','w')\")",
    f"eval(\"open('{MARKER}','w')\")",
    f"(x := open('{MARKER}', 'w'))",
    f'f\'{{open("{MARKER}", "w")}}\'',
    "2 ** 10 ** 10",
    "9" * 400,
]
ARITHMETIC_PIECES = st.sampled_from(["1", "2.5", "(", ")", "+", "-", "*", "/", "×", "÷", " ", "0", "1,000", "."])


def _no_trace():
    assert not MARKER.exists(), "model output was executed"


@pytest.fixture(autouse=True)
def _clean_marker():
    MARKER.unlink(missing_ok=True)
    yield
    _no_trace()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=300))
def test_any_text_gives_a_number_or_a_refusal(text):
    try:
        value = evaluate_arithmetic(text)
    except (UnsafeExpression, ZeroDivisionError, OverflowError):
        pass
    else:
        assert isinstance(value, float)
    assert try_evaluate(text) is None or isinstance(try_evaluate(text), float)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.sampled_from(PAYLOADS), ARITHMETIC_PIECES), min_size=1, max_size=6).map("".join))
def test_code_mixed_into_arithmetic_never_runs(text):
    has_code = any(payload in text for payload in PAYLOADS)
    if has_code:
        with pytest.raises((UnsafeExpression, ZeroDivisionError)):
            evaluate_arithmetic(text)
    else:
        try_evaluate(text)
    _no_trace()


@st.composite
def expressions(draw, depth=0):
    """(text, exact value) of a random arithmetic expression over small integers."""
    if depth >= 3 or draw(st.booleans()):
        number = draw(st.integers(min_value=0, max_value=999))
        return str(number), Fraction(number)
    left_text, left = draw(expressions(depth=depth + 1))
    right_text, right = draw(expressions(depth=depth + 1))
    op = draw(st.sampled_from(["+", "-", "*", "/", "×", "÷"]))
    if op in "/÷" and right == 0:
        op = "+"
    value = {"+": left + right, "-": left - right, "*": left * right, "×": left * right}.get(op)
    value = left / right if value is None else value
    return f"( {left_text} {op} {right_text} )", value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(expressions())
def test_arithmetic_values_are_exact(case):
    text, value = case
    if len(text) > MAX_LENGTH:
        with pytest.raises(UnsafeExpression):
            evaluate_arithmetic(text)
        return
    assert math.isclose(evaluate_arithmetic(text), float(value), rel_tol=1e-9, abs_tol=1e-9)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.sampled_from(PAYLOADS), st.text(max_size=40)), max_size=5).map(" ".join))
def test_teacher_completions_are_parsed_never_run(text):
    """A teacher's whole completion through the SVAMP parser and label comparison."""
    task = get_task("svamp")
    for completion in (text, f"{text} The answer is {text}."):
        parsed = task.parse_completion(completion)
        if parsed.label is not None:
            task.answers_match(parsed.label, "( 1.0 + 1.0 )")
        task.answers_match(task.parse_prediction(completion), "( 1.0 + 1.0 )")
    _no_trace()


def _model_with_its_own_code(folder: Path) -> Path:
    """A local model folder whose config names its own Python module, which leaves a trace when imported."""
    folder.mkdir()
    (folder / "hostile_config.py").write_text(
        f"from pathlib import Path\nPath({str(MARKER)!r}).touch()\n"
        "from transformers import T5Config\nclass HostileConfig(T5Config):\n    model_type = 'hostile'\n"
    )
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "hostile",
                "architectures": ["T5ForConditionalGeneration"],
                "auto_map": {"AutoConfig": "hostile_config.HostileConfig"},
                "d_model": 32,
                "num_layers": 1,
            }
        )
    )
    return folder


def test_a_model_with_its_own_code_does_not_load_unless_trusted(tmp_path):
    from raydsbs.student.model import student_kind

    folder = _model_with_its_own_code(tmp_path / "hostile")
    with pytest.raises(ValueError, match="trust_remote_code"):
        student_kind(StudentConfig(pretrained=str(folder)))
    _no_trace()
    assert student_kind(StudentConfig(pretrained=str(folder), trust_remote_code=True)) == "seq2seq"
    assert MARKER.exists()  # trusted by name in the config: its code ran
    MARKER.unlink()
