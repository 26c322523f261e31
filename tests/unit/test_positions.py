"""Rows that repeat an id: found from the ids' hashes, ids compared where hashes meet."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from raydsbs.positions import repeated_ids


def test_repeated_ids_are_found_from_hashes_and_confirmed_on_the_ids():
    ids = ["a", "b", "a", "c", "bb", "b", "a"]
    asked = []

    def ids_at(rows):
        asked.append(rows.tolist())
        return pa.array([ids[i] for i in rows])

    hashes = np.array([len(i) for i in ids], dtype=np.int64)  # "a", "b" and "c" share one hash, "bb" has its own
    assert repeated_ids(hashes, ids_at).tolist() == [False, False, True, False, False, True, True]
    assert asked == [[0, 1, 2, 3, 5, 6]]  # "bb" alone with its hash: never read
    assert not repeated_ids(np.arange(5, dtype=np.int64), ids_at).any() and len(asked) == 1
