"""CommonsenseQA: a question with five answer choices; the label is the chosen text.

A ground-truth row of the paper's files::

    {"id": "080ef6941410139d6869e78122bc741e",
     "question": "A beaver is know for building prowess, their supplies come from where?",
     "choices": ["british columbia", "body of water", "wooded area", "pay debts", "zoo"],
     "answer": "wooded area", ...}

and PaLM's completion for it::

    "The answer must be the place where beavers get their supplies. Of the above
     choices, only wooded areas have the supplies that beavers need. So the answer
     is (c) wooded area.\n\nQ: What is the best way ..."
"""

from __future__ import annotations

import re

from raydsbs.tasks.base import Example
from raydsbs.tasks.released_task import ReleasedTask

LETTERS = "abcde"


def format_question(question: str, choices: list[str]) -> str:
    """The question with its lettered choices, as the teacher sees it."""
    lines = [question, "Answer Choices:"] + [f"({letter}) {choice}" for letter, choice in zip(LETTERS, choices)]
    return "\n".join(lines)


class CqaTask(ReleasedTask):
    name = "cqa"
    exemplar_file = "cqa_exemplars.jsonl"

    def to_example(self, row: dict, example_id: str) -> Example:
        return Example(example_id, format_question(row["question"], list(row["choices"])), str(row["answer"]))

    def parse_answer(self, answer_text: str) -> str | None:
        """``"(c) wooded area."`` -> "wooded area"; a bare ``"wooded area"`` is accepted too."""
        text = answer_text.strip()
        lettered = re.match(r"\(([a-e])\)\s*(.*)", text)
        if lettered:
            text = lettered.group(2)
        text = text.split("\n")[0].strip().rstrip(".").strip()
        return text or None
