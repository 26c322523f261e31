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
import posixpath
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pyarrow.fs as pafs

from raydsbs.storage import READ_BUFFER_BYTES, Location, location
from raydsbs.tasks.base import Example, RejectedRow


class SourceError(ValueError):
    """A whole source is unusable (missing file, unknown format, hub not reachable)."""


RawRow = dict | RejectedRow
PARQUET_BATCH_ROWS = 8192  # rows of a Parquet source decoded at once


def _json_lines(stream: io.BufferedIOBase, name: str) -> Iterator[RawRow]:
    for number, raw in enumerate(stream, start=1):
        where = f"{name} line {number}"
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


def _json_file(stream: io.BufferedReader, name: str) -> Iterator[RawRow]:
    """A JSON list of objects (one document: read whole), or JSON lines (the paper's ``*.json`` files are JSON
    lines: streamed). In a list, an item holding bytes that are not UTF-8 is rejected alone."""
    if stream.peek(64).lstrip()[:1] != b"[":
        yield from _json_lines(stream, name)
        return
    try:
        rows = json.loads(stream.read().decode("utf-8", errors="surrogateescape"))  # bad bytes kept as U+DC80..
    except json.JSONDecodeError as error:
        raise SourceError(f"{name}: not a readable JSON list ({error})") from None
    if not isinstance(rows, list):
        raise SourceError(f"{name}: a JSON file holds a list of objects or JSON lines, not a {type(rows).__name__}")
    for i, row in enumerate(rows):
        where = f"{name} item {i}"
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


def _parquet_file(file, name: str) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(file).iter_batches(batch_size=PARQUET_BATCH_ROWS):
        yield from batch.to_pylist()


def _csv_file(stream: io.BufferedIOBase, name: str) -> Iterator[RawRow]:
    """Rows of a CSV file with a header line; a row with bytes that are not UTF-8, or with more or fewer fields
    than the header, is rejected alone (a quoted field may span lines: the row's first line is named)."""
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="surrogateescape", newline="")
    reader = csv.DictReader(text)
    if reader.fieldnames and _has_undecodable(list(reader.fieldnames)):
        raise SourceError(f"{name}: the header line holds bytes that are not UTF-8")
    first_line = reader.line_num + 1
    for row in reader:
        where = f"{name} line {first_line}"
        first_line = reader.line_num + 1
        if None in row or None in row.values():
            yield RejectedRow("", "wrong_field_count", f"{where}: {len(reader.fieldnames or [])} columns in the header")
        else:
            yield _decoded(row, where)


READERS = {".jsonl": _json_lines, ".json": _json_file, ".parquet": _parquet_file, ".csv": _csv_file}
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".bz2": "bz2"}  # of a line-based file, decompressed as it streams


def _format_suffixes(name: str) -> tuple[str, str, str | None]:
    """(the name without its format's suffixes, the format's suffix, the compression or None), as given:
    ``part-0.JSONL.gz`` -> ``("part-0", ".jsonl", "gzip")``."""
    stem, compression = name, None
    for suffix, codec in COMPRESSIONS.items():
        if stem.lower().endswith(suffix):
            stem, compression = stem[: -len(suffix)], codec
    base, dot, last = stem.rpartition(".")
    return (base, f".{last.lower()}", compression) if dot else (stem, "", compression)


def source_format(name: str) -> tuple[str, str | None]:
    """A data file's format and compression from its name (``train.jsonl.gz`` -> ``(".jsonl", "gzip")``); an
    unknown one is a :class:`SourceError` naming the formats there are."""
    _, suffix, compression = _format_suffixes(name)
    if suffix not in READERS or (compression and suffix == ".parquet"):
        known = ", ".join([*READERS, *(f"{s}{c}" for s in (".jsonl", ".json", ".csv") for c in COMPRESSIONS)])
        raise SourceError(
            f"{name}: unknown format {suffix + (f' ({compression})' if compression else '')!r}; use {known}"
        )
    return suffix, compression


def open_source(fs: pafs.FileSystem, path: str):
    """A data file opened for its reader: Parquet for random access (its footer first), the rest as a buffered
    stream, decompressed as it is read."""
    suffix, compression = source_format(path.rsplit("/", 1)[-1])
    if suffix == ".parquet":
        return fs.open_input_file(path)
    return io.BufferedReader(fs.open_input_stream(path, compression=compression), buffer_size=READ_BUFFER_BYTES)


def file_rows(opened, name: str) -> Iterator[RawRow]:
    """Every row of an opened data file (:func:`open_source`), in order; unreadable rows as :class:`RejectedRow`."""
    return READERS[source_format(name)[0]](opened, name)


def read_rows(path: str | Path | Location) -> Iterator[RawRow]:
    """Every row of a file (a local path or a storage URI), in order, streamed; unreadable rows as
    :class:`RejectedRow`. A missing file or an unknown format is an error here, before any row is read."""
    path = location(path)
    if not path.is_file():
        raise SourceError(f"no such data file: {path}")
    source_format(path.name)
    return _read_opened(path)


def _read_opened(path: Location) -> Iterator[RawRow]:
    with open_source(path.fs, path.path) as opened:
        yield from file_rows(opened, path.name)


WILDCARDS = "*?["


def source_files(where: str | Path) -> list[Location]:
    """The data files a split names, sorted by path: one file; every data file under a folder (at any depth;
    names starting with ``_`` or ``.``, such as ``_SUCCESS``, and files of other formats left out); or the files
    a glob matches (``data/train-*.jsonl.gz``, ``s3://bucket/shards/*/part-*.parquet``). Finding none is an error
    naming what was looked for."""
    text = str(where)
    parts = text.split("/")
    wild = next((i for i, part in enumerate(parts) if any(char in part for char in WILDCARDS)), None)
    if wild is not None:
        matched = location("/".join(parts[:wild]) or ".").glob("/".join(parts[wild:]))
        files = [found for found in matched if found.is_file()]
        for found in files:
            source_format(found.name)  # a glob may match a file of another format: say so before reading
    else:
        root = location(text)
        if root.is_file():
            source_format(root.name)
            return [root]
        if not root.is_dir():
            raise SourceError(f"no such data file or folder: {root}")
        infos = root.fs.get_file_info(pafs.FileSelector(root.path, recursive=True))
        relative = [info.path[len(root.path) :].lstrip("/") for info in infos if info.type == pafs.FileType.File]
        files = [root / name for name in relative if _is_data_file(name)]
    if not files:
        raise SourceError(f"no data files ({', '.join(READERS)}, optionally .gz/.zst/.bz2) in {text}")
    return sorted(files, key=lambda found: found.path)


def _is_data_file(relative: str) -> bool:
    """A file under a folder that is data: no part of its path hidden (``.``) or private (``_``), a known format."""
    if any(part[:1] in ("_", ".") for part in relative.split("/") if part):
        return False
    try:
        source_format(relative.rsplit("/", 1)[-1])
    except SourceError:
        return False
    return True


@dataclass(frozen=True)
class FileSplit:
    """A split whose rows are in data files (:func:`source_files`). The corpus stage reads it through Ray Data,
    a read task per file, and turns each raw row into an Example or a RejectedRow with ``to_example(row,
    row_id)`` in a map stage; iterating it here reads the same rows, file after file.

    A row without an id column of its own is known by its place: ``<id_prefix>-<row:06d>`` in a split of one
    file (``svamp-train-000012``: how the released rows are numbered), ``<id_prefix>-<file>-<row:06d>`` in a
    split of several, the file named by its path under their common folder, so adding a file renames no row."""

    files: tuple[Location, ...]
    id_prefix: str
    to_example: Callable[[RawRow, str], Example | RejectedRow]

    @cached_property
    def _common_folder(self) -> str:
        return posixpath.commonpath([posixpath.dirname(file.path) for file in self.files])

    def row_ids(self, number: int) -> Callable[[int], str]:
        """How file ``number``'s rows are named by their place in it."""
        if len(self.files) == 1:
            return lambda position: f"{self.id_prefix}-{position:06d}"
        relative = self.files[number].path[len(self._common_folder) :].lstrip("/")
        name = _format_suffixes(relative)[0]  # the format's suffixes off, not the rest of a dotted name
        return lambda position: f"{self.id_prefix}-{name}-{position:06d}"

    def raw_rows(self, number: int, opened) -> Iterator[tuple[str, RawRow]]:
        """File ``number``'s rows, opened by :func:`open_source`, each with the id its place gives it."""
        row_id = self.row_ids(number)
        for position, row in enumerate(file_rows(opened, self.files[number].name)):
            yield row_id(position), row

    def __iter__(self) -> Iterator[Example | RejectedRow]:
        for number, file in enumerate(self.files):
            with open_source(file.fs, file.path) as opened:
                for row_id, row in self.raw_rows(number, opened):
                    yield self.to_example(row, row_id)


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
