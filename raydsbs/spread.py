"""Tables spread over local scratch files by a number per row, with few files open at once.

    spread(tables, paths, file_of, schema)    # each row into paths[file_of(table)[row]]
    spread_by_position(tables, corpus_ids, paths, range_rows, schema)   # into paths[its id's corpus row // range_rows]

Each file's rows are buffered into row groups of about GROUP_ROWS (a few large
row groups, not a sliver per table and file), and at most OPEN_FILES files are
written at once: an open Parquet writer holds its own buffers, so with more
files than that the rows first go to OPEN_FILES group files of consecutive
paths, and each group's file then to its paths. What is held stays the same
whatever the number of rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raydsbs.positions import id_hashes

OPEN_FILES = 16  # Parquet files written at once
GROUP_ROWS = 2048  # rows of a file's row groups (buffered in memory until then)
READ_ROWS = 8192  # rows of a group file read back at once


class _Writers:
    def __init__(self, paths: list[Path], schema: pa.Schema):
        self.writers = [pq.ParquetWriter(path, schema) for path in paths]
        self.pending: list[list[pa.Table]] = [[] for _ in paths]

    def add(self, table: pa.Table, numbers: np.ndarray) -> None:
        for number in np.unique(numbers):
            self.pending[number].append(table.filter(pa.array(numbers == number)))
            if sum(part.num_rows for part in self.pending[number]) >= GROUP_ROWS:
                self._flush(number)

    def _flush(self, number: int) -> None:
        if self.pending[number]:
            self.writers[number].write_table(pa.concat_tables(self.pending[number]))
            self.pending[number] = []

    def close(self) -> None:
        for number, writer in enumerate(self.writers):
            self._flush(number)
            writer.close()


def _write(tables: Iterable[pa.Table], paths: list[Path], file_of, schema: pa.Schema) -> None:
    writers = _Writers(paths, schema)
    try:
        for table in tables:
            writers.add(table, file_of(table))
    finally:
        writers.close()


def spread(
    tables: Iterable[pa.Table], paths: list[Path], file_of: Callable[[pa.Table], np.ndarray], schema: pa.Schema
) -> None:
    """Every row of ``tables`` into ``paths[file_of(table)[row]]`` (each file written whole, maybe empty), in the
    order the rows come."""
    if len(paths) <= OPEN_FILES:
        _write(tables, paths, file_of, schema)
        return
    per_group = -(-len(paths) // OPEN_FILES)  # consecutive paths share a group
    groups = [paths[0].with_name(f"{paths[0].stem}.group-{n:05d}.parquet") for n in range(-(-len(paths) // per_group))]
    _write(tables, groups, lambda table: file_of(table) // per_group, schema)
    for number, group in enumerate(groups):
        first = number * per_group
        batches = pq.ParquetFile(group).iter_batches(batch_size=READ_ROWS)
        _write(
            (pa.Table.from_batches([batch], schema) for batch in batches),
            paths[first : first + per_group],
            lambda table, first=first: file_of(table) - first,
            schema,
        )
        group.unlink()


POSITION = "position"  # a row's place among the corpus's rows
_IDS = pa.schema([("id", pa.string()), (POSITION, pa.int64())])


@dataclass
class Unmatched:
    """The rows whose id is not among the corpus's: how many, and one of their ids (the first met, in the
    buckets' order: which one depends on the process's string hashes)."""

    count: int = 0
    first: str | None = None


def spread_by_position(
    tables: Iterable[pa.Table], corpus_ids: Iterable[pa.Array], paths: list[Path], range_rows: int, schema: pa.Schema
) -> Unmatched:
    """Every row of ``tables`` (``schema`` less its last column, ``position``) into ``paths[position //
    range_rows]``, with the position of its ``id`` among ``corpus_ids`` (the corpus's ids in its order, a chunk
    at a time); a row whose id the corpus lacks is left out, and counted.

    A hash join in buckets: the corpus's (id, position) pairs and the rows are first spread by their ids' hashes
    over one bucket file per path, and each bucket's rows are joined with its pairs a few thousand at a time, so
    what is held is one bucket's pairs, whatever the number of rows on either side."""
    scratch, buckets = paths[0].parent, len(paths)
    pairs = [scratch / f"{paths[0].stem}.ids-{n:05d}.parquet" for n in range(buckets)]
    rows = [scratch / f"{paths[0].stem}.rows-{n:05d}.parquet" for n in range(buckets)]

    def bucket_of(table: pa.Table) -> np.ndarray:
        return id_hashes(table["id"].to_pylist()) % buckets

    def numbered():
        start = 0
        for ids in corpus_ids:
            yield pa.table({"id": ids, POSITION: np.arange(start, start + len(ids), dtype=np.int64)}, schema=_IDS)
            start += len(ids)

    spread(numbered(), pairs, bucket_of, _IDS)
    spread(tables, rows, bucket_of, schema.remove(schema.get_field_index(POSITION)))
    unmatched = Unmatched()

    def joined():
        for pairs_file, rows_file in zip(pairs, rows, strict=True):
            known = pq.read_table(pairs_file)
            for batch in pq.ParquetFile(rows_file).iter_batches(batch_size=READ_ROWS):
                both = pa.Table.from_batches([batch]).join(known, "id", join_type="left outer")
                missing = both[POSITION].is_null()
                if unmatched.first is None and pc.any(missing).as_py():
                    unmatched.first = both["id"].filter(missing)[0].as_py()
                unmatched.count += pc.sum(missing).as_py() or 0
                yield both.filter(pc.invert(missing)).select(schema.names)
            pairs_file.unlink()
            rows_file.unlink()

    spread(joined(), paths, lambda table: table[POSITION].to_numpy() // range_rows, schema)
    return unmatched
