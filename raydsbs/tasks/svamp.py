"""SVAMP: one-unknown arithmetic word problems; the label is an expression.

A ground-truth row of the paper's files::

    {"input": "Luke scored 84 points after playing 2 rounds of a trivia game. If he
               gained the same number of points each round\nHow many points did he score per round?",
     "label": "( 84.0 / 2.0 )"}

and PaLM's completion for it, with the start of the next exemplar to cut::

    "He scored 84 points in 2 rounds. So he scored 84 / 2 = 42 points per round.
     The answer is (84 / 2).\n\nQ: There are 15 trees ..."

Labels compare by value, computed by a safe evaluator (never ``eval``).
"""

from __future__ import annotations

from raydsbs.tasks.base import Example
from raydsbs.tasks.released_task import ReleasedTask
from raydsbs.tasks.safe_eval import try_evaluate


class SvampTask(ReleasedTask):
    name = "svamp"
    answer_marker = "The answer is"
    exemplar_file = "svamp_exemplars.jsonl"

    def to_example(self, row: dict, example_id: str) -> Example:
        return Example(example_id, str(row["input"]), str(row["label"]))

    def parse_answer(self, answer_text: str) -> str | None:
        """``"(16 * 17) * 4."`` -> "(16 * 17) * 4": the whole expression, if it evaluates."""
        expression = answer_text.strip().rstrip(".").strip()
        return expression if try_evaluate(expression) is not None else None

    def normalize(self, label: str) -> object:
        value = try_evaluate(label)
        return None if value is None else round(value, 6)
