"""Tasks defined in YAML: the paper's benchmarks and a user's own task, without Python.

A task file (see ``raydsbs/tasks/specs/*.yaml`` and docs/tasks.md) says how a
row becomes the text the teacher and student read, where its label is, how
the answer is stated and compared, and where its data come from::

    name: sentiment
    input_template: "Review: {text}\\nIs the review positive or negative?"
    label_column: label
    label_names: [negative, positive]      # integer labels -> names (optional)
    answer: {kind: choice, choices: [negative, positive]}
    exemplars:
      - {row: {text: "Great phone."}, rationale: "The reviewer praises it.", answer: positive}

Use it with ``task.name=path/to/sentiment.yaml`` and ``task.train_file=...``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Iterator
from dataclasses import replace
from functools import cached_property, partial
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from raydsbs.config import TaskConfig
from raydsbs.data.released import released_id
from raydsbs.tasks.answers import ANSWER_KINDS, answer_format
from raydsbs.tasks.base import Example, Exemplar, RejectedRow, Task
from raydsbs.tasks.sources import FileSplit, RawRow, SourceError, read_hub_split, source_files

LETTERS = "abcdefghij"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AnswerSpec(_Strict):
    kind: Literal[ANSWER_KINDS] = Field(description="choice | lettered_choice | number | expression | free")  # type: ignore[valid-type]
    choices: list[str] | None = Field(None, description="The label set of a 'choice' answer.")


class ExemplarSpec(_Strict):
    question: str | None = Field(None, description="The input text as the model sees it ...")
    row: dict[str, Any] | None = Field(
        None, description="... or a row of the task's columns, formatted by the template."
    )
    rationale: str
    answer: str

    @model_validator(mode="after")
    def _one_input(self):
        if (self.question is None) == (self.row is None):
            raise ValueError("an exemplar needs exactly one of question or row")
        return self


class HubSpec(_Strict):
    dataset: str = Field(description="Hugging Face dataset name, e.g. facebook/anli.")
    config: str | None = None
    splits: dict[str, str] = Field(description="Our split (train, val, test) -> the hub's split name.")
    input_template: str | None = Field(None, description="Template over the hub's columns, when they differ.")
    label_column: str | None = None


class TaskSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    input_template: str = Field(description="Python format string over the row's columns.")
    label_column: str = "label"
    label_names: list[str] | None = Field(None, description="Integer labels index into this list.")
    choices_column: str | None = Field(None, description="A list column shown as lettered answer choices.")
    id_column: str | None = Field(None, description="Column with a unique row id; else the row's position.")
    answer: AnswerSpec
    answer_marker: str = "So the answer is"
    answer_patterns: list[str] = Field(
        default_factory=list,
        description=(
            "The teacher's own answer statements, tried before the built-in ones: regular expressions with a group "
            "named 'answer', e.g. 'Verdict: (?P<answer>\\w+)'."
        ),
    )
    exemplars: str | list[ExemplarSpec] = Field(description="A JSONL file beside this one, or the list itself.")
    released_files: bool = Field(
        False, description="Reads the paper's released files (<name>_<split>.json) in task.data_dir."
    )
    hub: HubSpec | None = None
    paper_parser: str | None = Field(None, description="The authors' own parsing rules (task.parser=paper).")

    @model_validator(mode="after")
    def _patterns_compile(self):
        for pattern in self.answer_patterns:
            try:
                compiled = re.compile(pattern)
            except re.error as error:
                raise ValueError(f"answer pattern {pattern!r} is not a regular expression: {error}") from None
            if "answer" not in compiled.groupindex:
                raise ValueError(f"answer pattern {pattern!r} needs a group named 'answer': (?P<answer>...)")
        return self


class TaskSpecError(ValueError):
    pass


def load_spec(path: str | Path) -> TaskSpec:
    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
        return TaskSpec.model_validate(tree)
    except FileNotFoundError:
        raise TaskSpecError(f"no such task file: {path}") from None
    except yaml.YAMLError as error:
        raise TaskSpecError(f"{path}: not valid YAML: {error}") from None
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise TaskSpecError(f"{path}: {problems}") from None


def template_columns(template: str) -> list[str]:
    return [field for _, field, _, _ in string.Formatter().parse(template) if field]


class SpecTask(Task):
    """A task read from a :class:`TaskSpec`; ``base_dir`` resolves its exemplar file."""

    def __init__(self, spec: TaskSpec, base_dir: Path):
        self.spec = spec
        self.base_dir = base_dir
        self.name = spec.name
        self.answer_marker = spec.answer_marker
        self.answer_patterns = tuple(spec.answer_patterns)
        self.paper_parser = spec.paper_parser
        self.answer_format = answer_format(spec.answer.kind, spec.answer.choices)

    def example_openings(self) -> tuple[str, ...]:
        """``Q:``, and the input template's opening words ("Premise:"): a completion that goes on to write
        the next example in the task's own layout is cut there too."""
        literal = next(iter(string.Formatter().parse(self.spec.input_template)), ("", None, None, None))[0]
        opening = literal.strip().split("\n")[0].strip()
        return ("Q:", opening) if len(opening) >= 2 else ("Q:",)

    # --- rows -> examples --------------------------------------------------------------------

    def format_input(self, row: dict, template: str | None = None) -> str:
        """The text for one row; raises :class:`_BadRow` naming the column that is missing or mistyped."""
        template = template or self.spec.input_template
        values = {}
        for column in template_columns(template):
            if column not in row:
                raise _BadRow("missing_column", f"no column {column!r} (has {', '.join(sorted(row)) or 'none'})")
            value = row[column]
            if isinstance(value, bytes):  # a binary Parquet column
                try:
                    value = value.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise _BadRow(
                        "undecodable_bytes", f"column {column!r}: {error.reason} at byte {error.start}"
                    ) from None
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise _BadRow("mistyped_field", f"column {column!r} is {type(value).__name__}, expected text")
            values[column] = value
        text = template.format(**values)
        if self.spec.choices_column:
            choices = row.get(self.spec.choices_column)
            if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
                raise _BadRow("mistyped_field", f"column {self.spec.choices_column!r} must be a list of texts")
            lines = [f"({letter}) {choice}" for letter, choice in zip(LETTERS, choices, strict=False)]
            text = "\n".join([text, "Answer Choices:", *lines])
        return text

    def gold_label(self, row: dict, label_column: str | None = None) -> str:
        """The row's label, as the task states it: an index into ``label_names`` (``1`` or a CSV's ``"1"``) becomes
        its name; a label the task's answer kind can't compare (not a listed choice, not a number) is refused."""
        column = label_column or self.spec.label_column
        if column not in row or row[column] is None:
            raise _BadRow("missing_label", f"no value in label column {column!r}")
        value = row[column]
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise _BadRow("mistyped_field", f"label column {column!r} is {type(value).__name__}")
        names = self.spec.label_names
        if names is not None:
            index = _label_index(value)
            if index is not None:
                if not 0 <= index < len(names):
                    raise _BadRow("unknown_label", f"label {value!r} is not an index of {names}")
                value = names[index]
        label = str(value).strip()
        if not label:
            raise _BadRow("missing_label", f"empty label in column {column!r}")
        if self.answer_format.kind != "lettered_choice" and self.answer_format.normalize(label) is None:
            raise _BadRow(
                "unknown_label",
                f"label {label!r} is not a valid {self.answer_format.kind} answer"
                + (f" (one of {', '.join(self.spec.answer.choices)})" if self.spec.answer.choices else ""),
            )
        return label

    def to_example(
        self, row: RawRow, row_id: str, *, max_chars: int | None = None, hub: bool = False
    ) -> Example | RejectedRow:
        if isinstance(row, RejectedRow):  # unreadable in its file
            return replace(row, id=row_id)
        template = self.spec.hub.input_template if hub and self.spec.hub else None
        label_column = self.spec.hub.label_column if hub and self.spec.hub else None
        if self.spec.id_column and isinstance(row.get(self.spec.id_column), (str, int)):
            row_id = str(row[self.spec.id_column])
        try:
            question, gold = self.format_input(row, template), self.gold_label(row, label_column)
            if self.spec.choices_column:  # the label names one of the row's choices ("(b)" becomes its text)
                named = self.answer_format.parse(gold, question)
                if named is None:
                    raise _BadRow(
                        "unknown_label", f"label {gold!r} is not one of the row's {self.spec.choices_column!r}"
                    )
                gold = named
        except _BadRow as error:
            return RejectedRow(row_id, error.reason, f"row {row_id}: {error.detail}")
        if max_chars is not None and len(question) > max_chars:
            return RejectedRow(
                row_id, "input_too_long", f"row {row_id}: {len(question)} characters > task.max_input_chars={max_chars}"
            )
        return Example(row_id, question, gold)

    # --- splits ----------------------------------------------------------------------------

    def load_splits(self, config: TaskConfig) -> dict[str, FileSplit | Iterator[Example | RejectedRow]]:
        """Per split (val may be missing), from the first source the config names: the data files as a
        :class:`FileSplit` (read through Ray Data by the corpus stage); the released files or the hub's split as
        rows read here."""
        if config.train_file:
            if not config.test_file:
                raise SourceError("task.train_file needs task.test_file too (the held-out split)")
            to_example = partial(self.to_example, max_chars=config.max_input_chars)
            files = {"train": config.train_file, "val": config.val_file, "test": config.test_file}
            return {
                split: FileSplit(tuple(source_files(path)), f"{self.name}-{split}", to_example)
                for split, path in files.items()
                if path
            }
        raw, hub = self._raw_splits(config)
        to_example = partial(self.to_example, max_chars=config.max_input_chars, hub=hub)
        return {split: self._examples(split, rows, to_example) for split, rows in raw.items()}

    def _raw_splits(self, config: TaskConfig) -> tuple[dict[str, Iterable[RawRow]], bool]:
        """Raw rows per split from the released files or the hub; and whether it is the hub."""
        if config.data_dir:
            if not self.spec.released_files:
                raise SourceError(f"task {self.name!r} has no released files; use task.train_file / task.test_file")
            from raydsbs.data.released import read_ground_truth

            return {split: read_ground_truth(config.data_dir, self.name, split) for split in ("train", "test")}, False
        if self.spec.hub:
            hub = self.spec.hub
            return {split: read_hub_split(hub.dataset, hub.config, name) for split, name in hub.splits.items()}, True
        raise SourceError(
            f"task {self.name!r} needs data: set task.train_file and task.test_file (JSONL, Parquet, CSV)"
            + (" or task.data_dir (the paper's released files)" if self.spec.released_files else "")
        )

    def _examples(self, split: str, rows: Iterable[RawRow], to_example) -> Iterator[Example | RejectedRow]:
        for i, row in enumerate(rows):
            yield to_example(row, released_id(self.name, split, i))

    # --- answers ---------------------------------------------------------------------------

    @cached_property
    def _exemplars(self) -> list[Exemplar]:
        items = self.spec.exemplars
        if isinstance(items, str):
            import json

            path = self.base_dir / items
            items = [
                ExemplarSpec.model_validate(json.loads(line))
                for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()
            ]
        return [
            Exemplar(
                item.question if item.question is not None else self.format_input(item.row), item.rationale, item.answer
            )
            for item in items
        ]

    def exemplars(self) -> list[Exemplar]:
        return self._exemplars


def _label_index(value: str | int | float) -> int | None:
    """``1`` or ``"1"`` (a CSV's every value is text) -> 1; None for anything else."""
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


class _BadRow(ValueError):
    """Raised inside :meth:`to_example` for the :class:`RejectedRow` it returns."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail
