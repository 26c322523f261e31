"""Row positions at millions of rows, as numpy arrays rather than Python lists and dicts.

A seeded permutation (8 bytes a row), an index that finds rows by id (16
bytes a row beside the Arrow column of ids), and the rows that repeat an
earlier row's id (from the ids' hashes, 8 bytes a row)::

    order = seeded_permutation(1_000_000, seed=0)
    rows = IdIndex(table["id"]).find(["svamp-train-000012", "absent"])     # -> array([12, -1])
    again = repeated_ids(hashes, ids_at)                                     # -> a bool per row
"""

from __future__ import annotations

import array
import random
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

CHUNK_ROWS = 8192  # ids made into Python strings at once, to hash them


def seeded_permutation(count: int, seed: int) -> np.ndarray:
    """The permutation of ``range(count)`` that ``random.Random(seed).shuffle`` makes of a list of that many
    rows (the order this project has always drawn with), shuffled in 8 bytes a row."""
    order = array.array("q", range(count))
    random.Random(seed).shuffle(order)
    return np.frombuffer(order, dtype=np.int64)


class IdIndex:
    """Where each of a column of distinct ids is, in 16 bytes a row: the ids' hashes, sorted, and their rows.

    A process's own ``hash`` of a string is stable for its life, which is all an index built and asked in one
    actor needs; a hash shared by two ids is resolved by comparing the ids themselves."""

    def __init__(self, ids: pa.ChunkedArray | pa.Array):
        self.ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
        hashes = np.concatenate(
            [_hashes(self.ids.slice(start, CHUNK_ROWS).to_pylist()) for start in range(0, len(self.ids), CHUNK_ROWS)]
            or [np.zeros(0, np.int64)]
        )
        self.rows = np.argsort(hashes, kind="stable")
        self.hashes = hashes[self.rows]

    def find(self, wanted: list[str]) -> np.ndarray:
        """The row of each wanted id, -1 where it is not there."""
        hashes = _hashes(wanted)
        low, high = np.searchsorted(self.hashes, hashes, "left"), np.searchsorted(self.hashes, hashes, "right")
        found = np.full(len(wanted), -1, dtype=np.int64)
        single = np.flatnonzero(high - low == 1)
        candidates = self.rows[low[single]]
        same = pc.equal(self.ids.take(candidates), pa.array([wanted[i] for i in single], pa.string()))
        found[single[same.to_numpy(zero_copy_only=False)]] = candidates[same.to_numpy(zero_copy_only=False)]
        for i in np.flatnonzero(high - low > 1):  # ids that share a hash: compare them
            for row in self.rows[low[i] : high[i]]:
                if self.ids[int(row)].as_py() == wanted[i]:
                    found[i] = row
        return found


def _hashes(ids: list[str]) -> np.ndarray:
    return np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids))


def repeated_ids(hashes: np.ndarray, ids_at: Callable[[np.ndarray], pa.Array]) -> np.ndarray:
    """Per row, whether an earlier row has its id, from the hashes of the rows' ids in row order: only the rows
    whose hash another row shares have their ids read (``ids_at(sorted row numbers)``) and compared."""
    by_hash = np.argsort(hashes, kind="stable")
    in_order = hashes[by_hash]
    same = in_order[1:] == in_order[:-1]
    del in_order
    shared = np.zeros(hashes.size, dtype=bool)
    shared[by_hash[1:][same]] = True
    shared[by_hash[:-1][same]] = True
    repeated = np.zeros(hashes.size, dtype=bool)
    if shared.any():
        rows = np.flatnonzero(shared)
        table = pa.table({"id": ids_at(rows), "row": rows})
        first = table.group_by("id", use_threads=False).aggregate([("row", "min")])["row_min"].to_numpy()
        repeated[rows] = True
        repeated[first] = False
    return repeated
