"""What a training worker holds of the tokenized rows: its subsample's positions and lengths, and one window.

    rows = TrainRows(folder / "train.parquet", fraction=0.5, seed=0)   # 12 bytes a drawn row
    plan = EpochPlan(len(rows), batch_size=32, rank=0, world=2, seed=7, lengths=rows.lengths())
    batch = [rows[i] for i in plan[k]]        # reads plan[k]'s window of rows when it is first asked for

The subsample (``train.train_fraction`` of the train rows, drawn by
``train.seed`` over all of them, then those with a label target) is cut into
windows of WINDOW_ROWS consecutive examples. An epoch visits the windows in a
seeded order and shuffles, and length-buckets, within each one
(:func:`raydsbs.student.batching.epoch_batches`), so a worker reads each
window once an epoch and holds one window's tokens, whatever the corpus's
size. Every rank makes the same plan and takes its share of each global batch,
so the collectives line up. A subsample of at most WINDOW_ROWS examples is
one window: its epochs are those of a shuffle of the whole subsample.
"""

from __future__ import annotations

import bisect
import random
import zlib
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raydsbs.positions import seeded_permutation
from raydsbs.storage import Location
from raydsbs.student.batching import OBJECTIVES, EncodedExample, TaskRow, epoch_batches

WINDOW_ROWS = 65536  # examples a worker holds at once (a few row groups of the tokenized file)


def subsample_positions(count: int, fraction: float, seed: int) -> np.ndarray:
    """The first ``fraction`` of a seeded permutation of ``range(count)``, sorted: smaller fractions are subsets
    of larger ones."""
    return np.sort(seeded_permutation(count, seed)[: max(1, round(fraction * count))])


TOKEN_COLUMNS = [f"{task}_{part}" for task in OBJECTIVES for part in ("prompt", "target")]


def _tokens_per_row(table: pa.Table) -> pa.Array:
    """Tokens in all of each row's prompts and targets (a missing one counts 0)."""
    total = None
    for name in TOKEN_COLUMNS:
        counted = pc.fill_null(pc.list_value_length(table[name]), 0)
        total = counted if total is None else pc.add(total, counted)
    return total


def _encoded(row: dict) -> EncodedExample:
    def task_row(task: str) -> TaskRow | None:
        source = row[f"{task}_prompt"]
        return None if source is None else TaskRow(source, row[f"{task}_target"], row[f"{task}_given"])

    return EncodedExample(task_row("label"), task_row("rationale"))


class EncodedRows(Sequence):
    """The encoded examples of a tokenized file, kept as its Arrow columns (4 bytes a token; a Python list of
    ints takes about ten times that) and made into :class:`EncodedExample` objects one at a time, as batches
    ask for them."""

    def __init__(self, table: pa.Table):
        self.table = table.combine_chunks()

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitem__(self, index: int) -> EncodedExample:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return _encoded(self.table.slice(index % len(self), 1).to_pylist()[0])

    def lengths(self) -> list[int]:
        """Tokens in all rows of each example (what length-bucketing sorts by): len() of each, in one pass."""
        return _tokens_per_row(self.table).to_pylist()

    def rationales(self) -> int:
        """Examples that have a rationale target."""
        return self.table.num_rows - self.table["rationale_prompt"].null_count


def _with_labels(table: pa.Table) -> EncodedRows:
    """The rows that have a label target (the others teach this method nothing)."""
    return EncodedRows(table.filter(pc.is_valid(table["label_target"])))


def read_tokenized(folder: Location, fraction: float, seed: int) -> tuple[TrainRows, EncodedRows]:
    """(train, val): the examples of the ``fraction`` of train rows drawn by ``seed``, and every validation
    example. The draw is over all train rows, so every method draws the same rows."""
    val = folder / "val.parquet"
    return TrainRows(folder / "train.parquet", fraction, seed), _with_labels(pq.read_table(val.path, filesystem=val.fs))


class TrainRows(Sequence):
    """A worker's training examples: the drawn rows of a tokenized file that have a label target, read a
    window at a time (an :class:`EncodedRows` of it) as the plan reaches it."""

    def __init__(self, file: Location, fraction: float, seed: int):
        self.file = file
        labelled, lengths, rationale = _scan(file)
        drawn = subsample_positions(labelled.size, fraction, seed)
        self.positions = drawn[labelled[drawn]]
        self._lengths = lengths[self.positions]
        self._rationales = int(rationale[self.positions].sum())
        self._window: tuple[int, Sequence[EncodedExample]] | None = None

    def __len__(self) -> int:
        return self.positions.size

    def __getitem__(self, index: int) -> EncodedExample:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        number, offset = divmod(index % len(self), WINDOW_ROWS)
        if self._window is None or self._window[0] != number:
            self._window = None  # the last window goes before the next is read
            self._window = (number, self._read_window(number))
        return self._window[1][offset]

    def _read_window(self, number: int) -> Sequence[EncodedExample]:
        """Window ``number``'s examples: its row groups read one by one, keeping the drawn rows of each."""
        wanted = self.positions[number * WINDOW_ROWS : (number + 1) * WINDOW_ROWS]
        parquet = pq.ParquetFile(self.file.path, filesystem=self.file.fs)
        starts = np.cumsum([0] + [parquet.metadata.row_group(g).num_rows for g in range(parquet.num_row_groups)])
        parts = []
        for group in range(np.searchsorted(starts, wanted[0], "right") - 1, parquet.num_row_groups):
            if starts[group] > wanted[-1]:
                break
            low, high = np.searchsorted(wanted, [starts[group], starts[group + 1]])
            if high > low:
                parts.append(parquet.read_row_group(group).take(pa.array(wanted[low:high] - starts[group])))
        return EncodedRows(pa.concat_tables(parts))

    def lengths(self) -> np.ndarray:
        """Tokens in all rows of each example (what length-bucketing sorts by)."""
        return self._lengths

    def rationales(self) -> int:
        """Examples that have a rationale target."""
        return self._rationales


def _scan(file: Location) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of a tokenized file, a row group at a time: whether it has a label target, its tokens in all
    rows (prompts and targets), whether it has a rationale target."""
    labelled, lengths, rationale = [], [], []
    parquet = pq.ParquetFile(file.path, filesystem=file.fs)
    for group in range(parquet.num_row_groups):
        table = parquet.read_row_group(group, columns=TOKEN_COLUMNS)
        labelled.append(pc.is_valid(table["label_target"]).to_numpy(zero_copy_only=False))
        lengths.append(_tokens_per_row(table).to_numpy().astype(np.int32))
        rationale.append(pc.is_valid(table["rationale_prompt"]).to_numpy(zero_copy_only=False))
    if not labelled:
        return np.zeros(0, bool), np.zeros(0, np.int32), np.zeros(0, bool)
    return np.concatenate(labelled), np.concatenate(lengths), np.concatenate(rationale)


def _batches_in(count: int, batch_size: int, world: int) -> int:
    """How many batches :func:`epoch_batches` gives each rank for ``count`` examples."""
    padded = -(-count // world) * world
    return -(-padded // (batch_size * world))


class EpochPlan(Sequence):
    """This rank's batches of one epoch: the windows in a seeded order, each shuffled within itself (its
    batches made when the plan first reaches it). Every rank gets as many batches as every other."""

    def __init__(
        self, count: int, batch_size: int, rank: int, world: int, seed: int, lengths: Sequence[int] | None = None
    ):
        self.count, self.batch_size, self.rank, self.world, self.seed = count, batch_size, rank, world, seed
        self.lengths = lengths
        self.windows = list(range(-(-count // WINDOW_ROWS)))
        if len(self.windows) > 1:
            random.Random(seed).shuffle(self.windows)
        sizes = [min(WINDOW_ROWS, count - number * WINDOW_ROWS) for number in self.windows]
        self.starts = np.cumsum([0] + [_batches_in(size, batch_size, world) for size in sizes]).tolist()
        self._made: tuple[int, list[list[int]]] | None = None

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, index: int) -> list[int]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        slot = bisect.bisect_right(self.starts, index) - 1
        if self._made is None or self._made[0] != slot:
            self._made = (slot, self._window_batches(self.windows[slot]))
        return self._made[1][index - self.starts[slot]]

    def _window_batches(self, number: int) -> list[list[int]]:
        first = number * WINDOW_ROWS
        size = min(WINDOW_ROWS, self.count - first)
        # one window: the seed itself (a shuffle of the whole subsample); more: a seed per window
        seed = self.seed if len(self.windows) == 1 else zlib.crc32(f"{self.seed}:{number}".encode())
        lengths = list(map(int, self.lengths[first : first + size])) if self.lengths is not None else None
        local = epoch_batches(size, self.batch_size, self.rank, self.world, seed, lengths)
        return [[first + i for i in batch] for batch in local]
