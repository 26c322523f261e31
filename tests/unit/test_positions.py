"""Finding rows by id: hashes and positions beside the Arrow column, ids compared where hashes meet."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from raydsbs import positions
from raydsbs.positions import IdIndex, repeated_ids


def test_ids_that_share_a_hash_are_told_apart(monkeypatch):
    """Python's 64-bit string hashes of distinct ids almost never meet; when they do, the ids are compared."""
    monkeypatch.setattr(positions, "_hashes", lambda ids: np.array([len(i) % 2 for i in ids], dtype=np.int64))
    ids = [f"id-{i}" for i in range(20)]  # two hashes for twenty ids
    index = IdIndex(pa.array(ids))
    assert list(index.find(["id-7", "id-12", "id-99", "id-3"])) == [7, 12, -1, 3]


def test_the_index_finds_every_id_of_a_large_column():
    ids = [f"svamp-train-{i:07d}" for i in range(50_000)]
    index = IdIndex(pa.chunked_array([pa.array(ids[:20_000]), pa.array(ids[20_000:])]))
    wanted = ids[::997] + ["absent"]
    assert list(index.find(wanted)) == [*range(0, 50_000, 997), -1]


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
