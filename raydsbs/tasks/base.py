"""What every task provides, and the parsing steps all tasks share.

A task turns its raw rows into :class:`Example` rows (id, question, gold
label), holds its few-shot chain-of-thought exemplars as a data file of the
package, parses a teacher completion into (rationale, label) or a rejection
with a reason, and says when a predicted label counts as correct.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from importlib import resources

from raydsbs.config import TaskConfig
from raydsbs.tasks.answers import AnswerFormat
from raydsbs.tasks.completions import CompletionReader, ParsedCompletion

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Example:
    """One row of a task's corpus: the schema written to ``corpus/<split>.parquet``."""

    id: str
    question: str
    gold: str


@dataclass(frozen=True)
class RejectedRow:
    """A row that can't be used: ``reason`` is a short code, ``detail`` names the row and the problem. The
    one type for it, from a file's unreadable row (its ``id`` still empty) to a corpus reject."""

    id: str
    reason: str
    detail: str


@dataclass(frozen=True)
class Exemplar:
    """One few-shot chain-of-thought demonstration."""

    question: str
    rationale: str
    answer: str


class Task:
    """Base class of the task registry: ``arith`` in Python, the rest from YAML (:mod:`raydsbs.tasks.spec`)."""

    name: str = ""
    answer_marker: str = "So the answer is"  # how exemplars state the answer
    exemplar_file: str = ""
    paper_parser: str | None = None  # the authors' rules for this task, if any (raydsbs.tasks.paper_parsers)
    answer_format: AnswerFormat  # how the answer is read and compared (raydsbs.tasks.answers)
    answer_patterns: tuple[str, ...] = ()  # the task's own answer statements, tried first (raydsbs.tasks.completions)

    def example_openings(self) -> tuple[str, ...]:
        """How a next few-shot example can open in a completion: our prompts' ``Q:``."""
        return ("Q:",)

    @cached_property
    def reader(self) -> CompletionReader:
        """Cuts a completion at the next example and finds its answer statement."""
        return CompletionReader(self.answer_marker, self.example_openings(), self.answer_patterns)

    def load_splits(self, config: TaskConfig) -> dict[str, Iterable[Example | RejectedRow]]:
        """Each split's rows in its source's order, as they are read (a source of millions of rows is streamed),
        rows that can't be used as RejectedRow; a split of data files as a ``FileSplit`` (the corpus stage reads
        it through Ray Data; iterated, it reads the same rows here). ``val`` may be missing: the corpus stage then
        carves it from train; it also takes the first ``task.num_<split>`` (raydsbs.data.corpus)."""
        raise NotImplementedError

    def parse_answer(self, answer_text: str, question: str = "") -> str | None:
        """The label in an answer statement's text, or None when there is none; ``question`` for its choices."""
        return self.answer_format.parse(answer_text, question)

    def normalize(self, label: str) -> object:
        """The comparable form of a label (a number, a lower-cased choice, ...)."""
        return self.answer_format.normalize(label)

    def answers_match(self, predicted: str | None, gold: str) -> bool:
        """Whether a predicted label is correct, by the task's own comparison."""
        if predicted is None:
            return False
        left, right = self.normalize(predicted), self.normalize(gold)
        return left is not None and left == right

    def exemplars(self) -> list[Exemplar]:
        """The few-shot demonstrations, read from ``raydsbs/tasks/data/<exemplar_file>``."""
        text = resources.files("raydsbs.tasks").joinpath("data", self.exemplar_file).read_text()
        return [Exemplar(**json.loads(line)) for line in text.splitlines() if line.strip()]

    def format_answer(self, exemplar: Exemplar) -> str:
        """How a demonstration states its rationale and answer."""
        return f"{exemplar.rationale} {self.answer_marker} {exemplar.answer}."

    def parse_completion(self, completion: str, question: str = "") -> ParsedCompletion:
        """Split a raw teacher completion into rationale and label, or reject it with a reason."""
        text = self.reader.cut(completion)
        if not text:
            return ParsedCompletion("", None, "empty_completion")
        statement = self.reader.statement(text)
        if statement is None:
            return ParsedCompletion(text, None, "no_answer_stated")
        label = self.parse_answer(statement.answer, question)
        if label is None:
            return ParsedCompletion(statement.rationale, None, "unparsable_answer")
        if not statement.rationale:
            return ParsedCompletion("", label, "empty_rationale")
        return ParsedCompletion(statement.rationale, label)

    def parse_given(self, rationale: str, label: str, question: str = "") -> ParsedCompletion:
        """A rationale and label someone already split (``replay`` of a "bring your own" file), checked."""
        parsed_label = self.parse_answer(label, question)
        if parsed_label is None:
            return ParsedCompletion(rationale.strip(), None, "unparsable_answer")
        if not rationale.strip():
            return ParsedCompletion("", parsed_label, "empty_rationale")
        return ParsedCompletion(rationale.strip(), parsed_label)

    def completion_rules(self, parser: str):
        """What reads and scores teacher completions: this task (``raydsbs``) or the authors' rules (``paper``)."""
        if parser == "raydsbs":
            return self
        from raydsbs.tasks.paper_parsers import PAPER_RULES

        if self.paper_parser not in PAPER_RULES:
            raise ValueError(f"task {self.name!r} has no paper parser; use task.parser=raydsbs")
        return PAPER_RULES[self.paper_parser]

    def parse_prediction(self, text: str, question: str = "") -> str | None:
        """The label in a student's output: a bare answer, or a rationale and an answer statement."""
        statement = self.reader.statement(self.reader.cut(text))
        return self.parse_answer(statement.answer if statement else text, question)
