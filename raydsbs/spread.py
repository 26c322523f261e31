"""Tables spread over local scratch files by a number per row, with few files open at once.

    spread(tables, paths, file_of, schema)    # each row into paths[file_of(table)[row]]

Each file's rows are buffered into row groups of about GROUP_ROWS (a few large
row groups, not a sliver per table and file), and at most OPEN_FILES files are
written at once: an open Parquet writer holds its own buffers, so with more
files than that the rows first go to OPEN_FILES group files of consecutive
paths, and each group's file then to its paths. What is held stays the same
whatever the number of rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

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
