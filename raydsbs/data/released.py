"""Reader of the files released with the Distilling Step-by-Step paper.

A folder holds the ground truth as JSON lines, ``<task>_train.json`` and
``<task>_test.json``, and PaLM-540B's raw few-shot completions under
``llm/<split>_CoT_<K>.json``: each one JSON list of strings that lines up by
position with the ground-truth rows once a split's files are joined in order
K = 0, 1, 2, ... (see ``../shared/data/dss/README.md``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

FILE_SPLITS = ("train", "test")


class ReleasedDataError(ValueError):
    """A released file is missing or does not line up with its ground truth."""


def _folder(data_dir: str | Path | None, task: str) -> Path:
    if data_dir is None:
        raise ReleasedDataError(f"task {task!r} needs task.data_dir, the folder of the paper's released files")
    folder = Path(data_dir)
    if not folder.is_dir():
        raise ReleasedDataError(f"task.data_dir {str(folder)!r} is not a folder")
    return folder


def read_ground_truth(data_dir: str | Path | None, task: str, split: str) -> Iterator[dict]:
    """The rows of ``<task>_<split>.json``, streamed; a line that is not a JSON object is an error naming it (a
    missing file is one before any row is read)."""
    path = _folder(data_dir, task) / f"{task}_{split}.json"
    if not path.is_file():
        raise ReleasedDataError(f"missing ground-truth file {path}")
    return _ground_truth_rows(path)


def _ground_truth_rows(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ReleasedDataError(f"{path}:{number}: not JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise ReleasedDataError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            yield row


def _part_number(path: Path) -> int:
    return int(re.search(r"_(\d+)\.json$", path.name).group(1))


def read_completions(data_dir: str | Path | None, task: str, split: str) -> list[str]:
    """A split's raw teacher completions, in ground-truth order."""
    folder = _folder(data_dir, task) / "llm"
    parts = sorted(folder.glob(f"{split}_CoT_*.json"), key=_part_number)
    if not parts:
        raise ReleasedDataError(f"no completion files {folder}/{split}_CoT_*.json")
    completions: list[str] = []
    for part in parts:
        chunk = json.loads(part.read_text(encoding="utf-8"))
        if not isinstance(chunk, list):
            raise ReleasedDataError(f"{part}: expected a JSON list of strings")
        completions.extend(chunk)
    return completions


def released_id(task: str, split: str, position: int) -> str:
    """The row id that ties a ground-truth row to its completion: ``svamp-train-000012``."""
    return f"{task}-{split}-{position:06d}"


def completions_by_id(data_dir: str | Path | None, task: str) -> dict[str, str]:
    """Every released completion keyed by :func:`released_id`, checked to line up with the ground truth."""
    by_id = {}
    for split in FILE_SPLITS:
        truth = sum(1 for _ in read_ground_truth(data_dir, task, split))
        completions = read_completions(data_dir, task, split)
        if len(completions) != truth:
            raise ReleasedDataError(
                f"{task} {split}: {len(completions)} completions for {truth} ground-truth rows; they must line up"
            )
        by_id.update((released_id(task, split, i), text) for i, text in enumerate(completions))
    return by_id
