"""Reading a task's raw rows: local JSONL / JSON / Parquet / CSV files, the
paper's released files, or a Hugging Face hub dataset (online only).

A row that can't be read (undecodable bytes, broken JSON, not an object) is
not an error for the whole file: it comes back as a :class:`RowProblem`
naming the file, the line and what is wrong, and the corpus stage writes it
to ``corpus/rejects.parquet``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RowProblem:
    """A row that could not be used: ``reason`` is a short code, ``detail`` says where and why."""

    reason: str
    detail: str


class SourceError(ValueError):
    """A whole source is unusable (missing file, unknown format, hub not reachable)."""


RawRow = dict | RowProblem


def _json_lines(path: Path) -> list[RawRow]:
    rows: list[RawRow] = []
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        where = f"{path.name} line {number}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            rows.append(RowProblem("undecodable_bytes", f"{where}: {error.reason} at byte {error.start}"))
            continue
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            rows.append(RowProblem("not_json", f"{where}: {error.msg}"))
            continue
        rows.append(row if isinstance(row, dict) else RowProblem("not_an_object", f"{where}: {type(row).__name__}"))
    return rows


def _json_file(path: Path) -> list[RawRow]:
    """A JSON list of objects, or JSON lines (the paper's ``*.json`` files are JSON lines)."""
    head = path.read_bytes()[:1].strip()
    if head != b"[":
        return _json_lines(path)
    try:
        rows = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SourceError(f"{path}: not a readable JSON list ({error})") from None
    return [row if isinstance(row, dict) else RowProblem("not_an_object", f"{path.name} item {i}: {type(row).__name__}")
            for i, row in enumerate(rows)]


def _parquet_file(path: Path) -> list[RawRow]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def _csv_file(path: Path) -> list[RawRow]:
    text = path.read_bytes().decode("utf-8", errors="replace")
    return list(csv.DictReader(io.StringIO(text)))


READERS = {".jsonl": _json_lines, ".json": _json_file, ".parquet": _parquet_file, ".csv": _csv_file}


def read_rows(path: str | Path) -> list[RawRow]:
    """Every row of a local file, in order; unreadable rows as :class:`RowProblem`."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"no such data file: {path}")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise SourceError(f"{path}: unknown format {path.suffix!r}; use one of {', '.join(READERS)}")
    return reader(path)


def read_hub_split(dataset: str, config: str | None, split: str) -> list[RawRow]:
    """One split of a Hugging Face hub dataset (needs the ``datasets`` package and a network)."""
    try:
        import datasets
    except ImportError:
        raise SourceError(
            f"reading {dataset!r} from the Hugging Face hub needs the datasets package: pip install 'raydsbs[hub]'; "
            "offline, point task.train_file / task.test_file (JSONL, Parquet, CSV) or task.data_dir at local copies"
        ) from None
    try:
        return list(datasets.load_dataset(dataset, config, split=split))
    except Exception as error:  # network, auth, unknown split: say which and how to work offline
        raise SourceError(f"could not load {dataset!r} ({config or 'default'}) split {split!r} from the hub: {error}; "
                          "offline, use task.train_file / task.test_file") from None
