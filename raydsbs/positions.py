"""Row positions at millions of rows, as numpy arrays rather than Python lists and dicts.

A seeded permutation (8 bytes a row), the ids' hashes, and the rows that
repeat an earlier row's id (from the hashes, 8 bytes a row)::

    order = seeded_permutation(1_000_000, seed=0)
    hashes = id_hashes(table["id"].to_pylist())
    again = repeated_ids(hashes, ids_at)                                     # -> a bool per row
"""

from __future__ import annotations

import array
import random
from collections.abc import Callable

import numpy as np
import pyarrow as pa


def seeded_permutation(count: int, seed: int) -> np.ndarray:
    """The permutation of ``range(count)`` that ``random.Random(seed).shuffle`` makes of a list of that many
    rows (the order this project has always drawn with), shuffled in 8 bytes a row."""
    order = array.array("q", range(count))
    random.Random(seed).shuffle(order)
    return np.frombuffer(order, dtype=np.int64)


def id_hashes(ids: list[str]) -> np.ndarray:
    """The ids' hashes: this process's own ``hash`` of a string, stable for its life (all a bucketing or a
    check within one process needs)."""
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
