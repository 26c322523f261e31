"""How a task states its answer, and when two answers are the same.

Each format reads the text after the answer marker ("So the answer is ...")
into a label, or None when it holds no valid answer, and turns a label into
a comparable value:

- ``choice``: one of a fixed label set (``neutral``, ``(b) neutral``, ``Neutral.``).
- ``lettered_choice``: ``(c) wooded area`` -> "wooded area" (the row's own choices).
- ``number``: ``42``, ``42 apples``, ``1,200`` -> compared as numbers.
- ``expression``: ``(84 / 2)`` -> compared by value, with the safe evaluator.
- ``free``: any text, compared lower-cased with punctuation and spaces squeezed.
"""

from __future__ import annotations

import re
import string

from raydsbs.tasks.safe_eval import try_evaluate

_LETTER_PREFIX = re.compile(r"^\(?([a-z])\)\s*", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _first_line(text: str) -> str:
    return text.strip().split("\n")[0].strip()


def _value(label: str) -> float | None:
    """A numeric label's value, rounded so 42 and 42.0000001 compare equal; None when it isn't arithmetic."""
    value = try_evaluate(label)
    return None if value is None else round(value, 6)


def _squeeze(text: str) -> str:
    """Lower-cased, outer punctuation stripped, inner spaces single."""
    return " ".join(text.lower().strip().strip(string.punctuation + " ").split())


class AnswerFormat:
    kind = ""

    def parse(self, answer_text: str) -> str | None:
        raise NotImplementedError

    def chance(self, question: str) -> float | None:
        """The accuracy of a uniform guess on this row, for answers picked from a set; None otherwise."""
        return None

    def normalize(self, label: str) -> object:
        return _squeeze(label) or None


class ChoiceAnswer(AnswerFormat):
    kind = "choice"

    def __init__(self, choices: list[str]):
        self.choices = {_squeeze(choice): choice for choice in choices}

    def parse(self, answer_text: str) -> str | None:
        text = _squeeze(_LETTER_PREFIX.sub("", _first_line(answer_text)))
        if text in self.choices:
            return self.choices[text]
        # "neutral, because ..." or "entailment as the premise says": the first word(s) that name a choice
        for key, choice in self.choices.items():
            if text.startswith(key + " ") or text.startswith(key + ","):
                return choice
        return None

    def normalize(self, label: str) -> object:
        text = _squeeze(label)
        return text if text in self.choices else None

    def chance(self, question: str) -> float | None:
        return 1 / len(self.choices)


_CHOICE_LINE = re.compile(r"^\([a-z]\) ", re.MULTILINE)  # "(c) wooded area", as the task writes its choices


class LetteredChoiceAnswer(AnswerFormat):
    kind = "lettered_choice"

    def chance(self, question: str) -> float | None:
        choices = len(_CHOICE_LINE.findall(question))
        return 1 / choices if choices else None

    def parse(self, answer_text: str) -> str | None:
        text = _LETTER_PREFIX.sub("", _first_line(answer_text))
        return text.rstrip(".").strip() or None


class NumberAnswer(AnswerFormat):
    kind = "number"

    def parse(self, answer_text: str) -> str | None:
        """``"9."``, ``"9 marbles."`` or ``"4 + 5 = 9."`` -> "9": the last number of the answer's sentence."""
        sentence = re.split(r"\.(?!\d)|\n", answer_text.replace(",", ""), maxsplit=1)[0]
        numbers = _NUMBER.findall(sentence)
        return numbers[-1] if numbers else None

    def normalize(self, label: str) -> object:
        return _value(label)


class ExpressionAnswer(AnswerFormat):
    kind = "expression"

    def parse(self, answer_text: str) -> str | None:
        """``"(16 * 17) * 4."`` -> "(16 * 17) * 4": the whole expression, if it evaluates."""
        expression = _first_line(answer_text).rstrip(".").strip()
        return expression if try_evaluate(expression) is not None else None

    def normalize(self, label: str) -> object:
        return _value(label)


class FreeAnswer(AnswerFormat):
    kind = "free"

    def parse(self, answer_text: str) -> str | None:
        return _first_line(answer_text).rstrip(".").strip() or None


ANSWER_KINDS = ("choice", "lettered_choice", "number", "expression", "free")


def answer_format(kind: str, choices: list[str] | None = None) -> AnswerFormat:
    if kind == "choice":
        if not choices:
            raise ValueError("answer kind 'choice' needs a list of choices")
        return ChoiceAnswer(choices)
    formats = {"lettered_choice": LetteredChoiceAnswer, "number": NumberAnswer,
               "expression": ExpressionAnswer, "free": FreeAnswer}
    if kind not in formats:
        raise ValueError(f"unknown answer kind {kind!r}; known: {', '.join(ANSWER_KINDS)}")
    return formats[kind]()
