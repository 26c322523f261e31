"""How a task states its answer, and when two answers are the same.

Each format reads the text of an answer statement ("So the answer is ...",
see :mod:`raydsbs.tasks.completions`) into a label, or None when it holds no
valid answer, and turns a label into a comparable value:

- ``choice``: one of a fixed label set (``neutral``, ``(b) neutral``, ``Neutral.``).
- ``lettered_choice``: ``(c) wooded area`` -> "wooded area"; a bare ``(c)`` -> the row's choice (c).
- ``number``: ``42``, ``42 apples``, ``1,200`` -> compared as numbers.
- ``expression``: ``(84 / 2)`` -> compared by value, with the safe evaluator.
- ``free``: any text, compared lower-cased with punctuation and spaces squeezed.
"""

from __future__ import annotations

import difflib
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


def _close(written: str, listed: str) -> bool:
    """A choice written with a typo (or the row's typo corrected): at least 80 % of the characters in common."""
    return difflib.SequenceMatcher(None, written, listed).ratio() >= 0.8


def _squeeze(text: str) -> str:
    """Lower-cased, outer punctuation stripped, inner spaces single."""
    return " ".join(text.lower().strip().strip(string.punctuation + " ").split())


class AnswerFormat:
    kind = ""

    def parse(self, answer_text: str, question: str = "") -> str | None:
        """The label in ``answer_text``; ``question`` is the row's input (its listed choices)."""
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

    def parse(self, answer_text: str, question: str = "") -> str | None:
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


_CHOICE_LINE = re.compile(r"^\(([a-z])\) (.+)$", re.MULTILINE)  # "(c) wooded area", as the task writes its choices
_LETTER_MARK = re.compile(r"\(([a-z])\)", re.IGNORECASE)  # "(c)" anywhere in the answer
_LETTER_ONLY = re.compile(r"^\(?([a-z])\)?$", re.IGNORECASE)  # the answer is "(c)", "c)" or "c"


class LetteredChoiceAnswer(AnswerFormat):
    kind = "lettered_choice"

    def chance(self, question: str) -> float | None:
        choices = len(_CHOICE_LINE.findall(question))
        return 1 / choices if choices else None

    def parse(self, answer_text: str, question: str = "") -> str | None:
        """``(c) wooded area`` -> "wooded area". Given the row's question, the answer must be one of its choices:
        a bare ``(c)`` names choice (c) (so does ``(c) skyscraper`` where the row lists "skyscaper"), and an
        answer naming two choices ("either (a) x or (e) y"), none ("one of these"), or a letter and another
        text ("(e) ice" where (e) is "water cooler") is no answer."""
        line = _first_line(answer_text).rstrip(".").strip()
        choices = {letter: text.strip() for letter, text in _CHOICE_LINE.findall(question)}
        if not choices:
            return _LETTER_PREFIX.sub("", line).rstrip(".").strip() or None
        letter_only = _LETTER_ONLY.findall(line)
        letters = {letter.lower() for letter in _LETTER_MARK.findall(line) + letter_only}
        if len(letters) > 1:
            return None
        text = "" if letter_only else _squeeze(_LETTER_PREFIX.sub("", line))
        by_text = {_squeeze(choice): choice for choice in choices.values()}
        if text in by_text:
            return by_text[text]
        letter_choice = choices.get(letters.pop()) if letters else None
        if letter_choice and (not text or _close(text, _squeeze(letter_choice))):
            return letter_choice  # "(c)" alone, or "(c) skyscraper" for the listed "skyscaper"
        return None  # the letter's choice and the written text disagree: which was meant is unknown


class NumberAnswer(AnswerFormat):
    kind = "number"

    def parse(self, answer_text: str, question: str = "") -> str | None:
        """``"9."``, ``"9 marbles."`` or ``"4 + 5 = 9."`` -> "9": the last number of the answer's sentence."""
        sentence = re.split(r"\.(?!\d)|\n", answer_text.replace(",", ""), maxsplit=1)[0]
        numbers = _NUMBER.findall(sentence)
        return numbers[-1] if numbers else None

    def normalize(self, label: str) -> object:
        return _value(label)


class ExpressionAnswer(AnswerFormat):
    kind = "expression"

    def parse(self, answer_text: str, question: str = "") -> str | None:
        """``"(16 * 17) * 4."`` -> "(16 * 17) * 4": the whole expression, if it evaluates."""
        expression = _first_line(answer_text).rstrip(".").strip()
        return expression if try_evaluate(expression) is not None else None

    def normalize(self, label: str) -> object:
        return _value(label)


class FreeAnswer(AnswerFormat):
    kind = "free"

    def parse(self, answer_text: str, question: str = "") -> str | None:
        return _first_line(answer_text).rstrip(".").strip() or None


ANSWER_KINDS = ("choice", "lettered_choice", "number", "expression", "free")


def answer_format(kind: str, choices: list[str] | None = None) -> AnswerFormat:
    if kind == "choice":
        if not choices:
            raise ValueError("answer kind 'choice' needs a list of choices")
        return ChoiceAnswer(choices)
    formats = {
        "lettered_choice": LetteredChoiceAnswer,
        "number": NumberAnswer,
        "expression": ExpressionAnswer,
        "free": FreeAnswer,
    }
    if kind not in formats:
        raise ValueError(f"unknown answer kind {kind!r}; known: {', '.join(ANSWER_KINDS)}")
    return formats[kind]()
