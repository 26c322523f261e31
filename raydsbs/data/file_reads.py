"""A split's data files through Ray Data, checked, back to the corpus stage in file order::

    read    a read task per file (the split's one, a folder's, a glob's), by the corpus's own readers: each row
            with the id its place gives it, pickled as it was read (a dict of any shape, or why it can't be read,
            with its file and line), TABLE_ROWS rows to a block
    check   a map stage: the task's row mapping (template, label, limits), then the corpus's row rules
    ──▶     staged tables (raydsbs.data.checks), streamed to the driver in file order (``preserve_order``)

Local files are read on the driver's node (a path there may be on no other node); files on storage every node
reaches (s3://, gs://, ...) anywhere in the cluster.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice

import pyarrow as pa
import ray
from ray.data.datasource import FileBasedDatasource

from raydsbs.config import RayConfig
from raydsbs.data.checks import TABLE_ROWS, checked_table
from raydsbs.ray_session import start_ray
from raydsbs.tasks.sources import FileSplit, open_source

BLOCK_BYTES = 4 << 20  # the most a block the reads and the check hand on holds: tens of thousands of rows
READ = pa.schema([("row_id", pa.string()), ("raw", pa.binary())])  # what a read task hands to the check


class SourceRows(FileBasedDatasource):
    """A split's data files, a read task each, read a row at a time by the corpus's readers."""

    def __init__(self, split: FileSplit):
        super().__init__([file.path for file in split.files], filesystem=split.files[0].fs)
        # Ray Data reads what is not distributed on the driver's node: a local path may be on no other node
        self._supports_distributed_reads = not split.files[0].is_local
        self._split = split
        self._numbers = {file.path: number for number, file in enumerate(split.files)}

    def _open_input_source(self, filesystem, path: str, **open_args):
        return open_source(filesystem, path)  # Parquet for random access; lines decompressed as they stream

    def _read_stream(self, f, path: str) -> Iterator[pa.Table]:
        rows = self._split.raw_rows(self._numbers[path], f)
        while chunk := list(islice(rows, TABLE_ROWS)):
            yield pa.table([[row_id for row_id, _ in chunk], [pickle.dumps(raw) for _, raw in chunk]], schema=READ)


def check(batch: pa.Table, split: FileSplit) -> pa.Table:
    """The map stage: each read row through the task's row mapping, then the corpus's row rules."""
    ids, raws = batch["row_id"].to_pylist(), batch["raw"].to_pylist()
    return checked_table(split.to_example(pickle.loads(raw), row_id) for row_id, raw in zip(ids, raws, strict=True))


def read_checked(split: FileSplit, config: RayConfig) -> Iterator[pa.Table]:
    """The split's rows checked, in file order, a block at a time. Closing the iterator stops the reads."""
    start_ray(config)
    with _ordered_blocks():  # the options a dataset copies when it is made
        read = ray.data.read_datasource(SourceRows(split), override_num_blocks=len(split.files))
        checked = read.map_batches(check, batch_format="pyarrow", batch_size=None, fn_kwargs={"split": split})
    try:
        for table in checked.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=1):
            if table.num_rows:
                yield table
    except Exception as error:  # a file unreadable as a whole: raise the reader's own error, not Ray's wrap
        cause = _unwrapped(error)
        if cause is error:
            raise
        raise cause from error


@contextmanager
def _ordered_blocks():
    """Datasets made meanwhile hand blocks on in the order the reads produce them, and about as they are read
    (Ray Data would merge a task's blocks up to its 128 MiB default: a whole 1M-row file, held at once)."""
    context = ray.data.DataContext.get_current()
    before = context.execution_options.preserve_order, context.target_max_block_size
    context.execution_options.preserve_order, context.target_max_block_size = True, BLOCK_BYTES
    try:
        yield
    finally:
        context.execution_options.preserve_order, context.target_max_block_size = before


def _unwrapped(error: BaseException) -> BaseException:
    """The first of ``error`` and its causes that is not Ray's wrapping of a task's error (RayTaskError,
    UserCodeException)."""
    seen = error
    while seen is not None:
        if not type(seen).__module__.startswith("ray."):
            return seen
        seen = seen.__cause__
    return error
