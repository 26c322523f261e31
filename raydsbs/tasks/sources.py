"""Reading a task's raw rows: JSONL / JSON / Parquet / CSV files (local, or on any storage pyarrow speaks:
``s3://bucket/train.jsonl``, read through raydsbs.storage), the paper's released files, or a Hugging Face
hub dataset (online only).

Rows are streamed, in file order: JSON lines and CSV a line at a time, Parquet a
row group at a time (a JSON list is one document, read whole), so a corpus of
millions of rows is never held in memory. A row that can't be read
(undecodable bytes, broken JSON, not an object) is not an error for the whole
file: it comes back as a :class:`RejectedRow` naming the file, the line and
what is wrong, and the corpus stage writes it to ``corpus/rejects.parquet``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from raydsbs.storage import Location, location
from raydsbs.tasks.base import RejectedRow


class SourceError(ValueError):
    """A whole source is unusable (missing file, unknown format, hub not reachable)."""


RawRow = dict | RejectedRow
PARQUET_BATCH_ROWS = 8192  # rows of a Parquet source decoded at once


def _json_lines(path: Location) -> Iterator[RawRow]:
    with path.open_input() as stream:
        for number, raw in enumerate(stream, start=1):
            where = f"{path.name} line {number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                yield RejectedRow("", "undecodable_bytes", f"{where}: {error.reason} at byte {error.start}")
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                yield RejectedRow("", "not_json", f"{where}: {error.msg}")
                continue
            yield row if isinstance(row, dict) else RejectedRow("", "not_an_object", f"{where}: {type(row).__name__}")


def _json_file(path: Location) -> Iterator[RawRow]:
    """A JSON list of objects (one document: read whole), or JSON lines (the paper's ``*.json`` files are JSON
    lines: streamed). In a list, an item holding bytes that are not UTF-8 is rejected alone."""
    with path.open_input() as stream:
        opening = stream.peek(64).lstrip()[:1]
    if opening != b"[":
        yield from _json_lines(path)
        return
    data = path.read_bytes()
    try:
        rows = json.loads(data.decode("utf-8", errors="surrogateescape"))  # bad bytes kept apart, as U+DC80..U+DCFF
    except json.JSONDecodeError as error:
        raise SourceError(f"{path}: not a readable JSON list ({error})") from None
    if not isinstance(rows, list):
        raise SourceError(f"{path}: a JSON file holds a list of objects or JSON lines, not a {type(rows).__name__}")
    for i, row in enumerate(rows):
        where = f"{path.name} item {i}"
        yield (
            _decoded(row, where)
            if isinstance(row, dict)
            else RejectedRow("", "not_an_object", f"{where}: {type(row).__name__}")
        )


def _decoded(row: dict, where: str) -> RawRow:
    """``row`` read with ``surrogateescape``, or a RejectedRow when it holds bytes that were not UTF-8."""
    return RejectedRow("", "undecodable_bytes", f"{where}: bytes that are not UTF-8") if _has_undecodable(row) else row


def _has_undecodable(value) -> bool:
    if isinstance(value, str):
        return any("\udc80" <= char <= "\udcff" for char in value)
    if isinstance(value, dict):
        return any(_has_undecodable(key) or _has_undecodable(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_undecodable(item) for item in value)
    return False


def _parquet_file(path: Location) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    with path.fs.open_input_file(path.path) as file:
        for batch in pq.ParquetFile(file).iter_batches(batch_size=PARQUET_BATCH_ROWS):
            yield from batch.to_pylist()


def _csv_file(path: Location) -> Iterator[RawRow]:
    """Rows of a CSV file with a header line; a row with bytes that are not UTF-8, or with more or fewer fields
    than the header, is rejected alone (a quoted field may span lines: the row's first line is named)."""
    with path.open_input() as stream:
        text = io.TextIOWrapper(stream, encoding="utf-8", errors="surrogateescape", newline="")
        reader = csv.DictReader(text)
        if reader.fieldnames and _has_undecodable(list(reader.fieldnames)):
            raise SourceError(f"{path}: the header line holds bytes that are not UTF-8")
        first_line = reader.line_num + 1
        for row in reader:
            where = f"{path.name} line {first_line}"
            first_line = reader.line_num + 1
            if None in row or None in row.values():
                yield RejectedRow(
                    "", "wrong_field_count", f"{where}: {len(reader.fieldnames or [])} columns in the header"
                )
            else:
                yield _decoded(row, where)


READERS = {".jsonl": _json_lines, ".json": _json_file, ".parquet": _parquet_file, ".csv": _csv_file}


def read_rows(path: str | Path | Location) -> Iterator[RawRow]:
    """Every row of a file (a local path or a storage URI), in order, streamed; unreadable rows as
    :class:`RejectedRow`. A missing file or an unknown format is an error here, before any row is read."""
    path = location(path)
    if not path.is_file():
        raise SourceError(f"no such data file: {path}")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise SourceError(f"{path}: unknown format {path.suffix!r}; use one of {', '.join(READERS)}")
    return reader(path)


def read_hub_split(dataset: str, config: str | None, split: str) -> Iterable[RawRow]:
    """One split of a Hugging Face hub dataset (needs the ``datasets`` package and a network)."""
    try:
        import datasets
    except ImportError:
        raise SourceError(
            f"reading {dataset!r} from the Hugging Face hub needs the datasets package: pip install 'raydsbs[hub]'; "
            "offline, point task.train_file / task.test_file (JSONL, Parquet, CSV) or task.data_dir at local copies"
        ) from None
    try:
        return datasets.load_dataset(dataset, config, split=split)  # memory-mapped Arrow, read as iterated
    except Exception as error:  # network, auth, unknown split: say which and how to work offline
        raise SourceError(
            f"could not load {dataset!r} ({config or 'default'}) split {split!r} from the hub: {error}; "
            "offline, use task.train_file / task.test_file"
        ) from None
