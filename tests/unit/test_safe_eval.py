import pytest

from raydsbs.tasks.safe_eval import UnsafeExpression, evaluate_arithmetic, try_evaluate


@pytest.mark.parametrize(
    "text, value",
    [
        ("( 84.0 / 2.0 )", 42.0),
        ("(16 * 17) * 4", 1088.0),
        ("-3 + 5", 2.0),
        ("7 × 6 ÷ 3", 14.0),
        ("1,000 - 1", 999.0),
    ],
)
def test_arithmetic(text, value):
    assert evaluate_arithmetic(text) == pytest.approx(value)


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('echo hi')",
        "2 ** 100000",
        "x + 1",
        "open('f')",
        "(lambda: 1)()",
        "[1, 2]",
        "1 if 1 else 2",
        "9" * 300,
    ],
)
def test_anything_but_arithmetic_is_refused(text):
    with pytest.raises(UnsafeExpression):
        evaluate_arithmetic(text)


def test_try_evaluate_returns_none_on_bad_input():
    assert try_evaluate("1 / 0") is None
    assert try_evaluate("import os") is None
