"""Rows spread over scratch files by their id's place in the corpus: a hash join in buckets, bounded."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raydsbs import positions, spread
from raydsbs.spread import POSITION, spread_by_position

SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), (POSITION, pa.int64())])


def _rows(ids: list[str]) -> pa.Table:
    return pa.table({"id": ids, "text": [f"text of {i}" for i in ids]})


def test_each_row_lands_in_its_range_with_its_corpus_position(tmp_path, monkeypatch):
    monkeypatch.setattr(spread, "OPEN_FILES", 2)  # four buckets and four ranges: through group files
    monkeypatch.setattr(spread, "READ_ROWS", 3)  # a bucket's rows joined three at a time
    corpus = [f"c{i:03d}" for i in range(0, 100, 7)]  # 15 ids, in a corpus order that is not sorted by hash
    corpus.reverse()
    paths = [tmp_path / f"range-{n}.parquet" for n in range(4)]
    wanted = ["c007", "nowhere", "c091", "c000", "c098", "c007", "also-nowhere"]
    tables = [_rows(wanted[:3]), _rows(wanted[3:])]
    chunks = [pa.array(corpus[:6]), pa.array(corpus[6:])]
    unmatched = spread_by_position(iter(tables), iter(chunks), paths, 4, SCHEMA)
    assert unmatched.count == 2 and unmatched.first in ("nowhere", "also-nowhere")
    got = {n: sorted(pq.read_table(path).to_pylist(), key=lambda r: r["id"]) for n, path in enumerate(paths)}
    where = {row_id: corpus.index(row_id) for row_id in corpus}
    expected = {n: [] for n in range(4)}
    for row_id in sorted(set(wanted) & set(corpus)):
        for _ in range(wanted.count(row_id)):  # a repeated id comes out as often as it went in
            expected[where[row_id] // 4].append({"id": row_id, "text": f"text of {row_id}", POSITION: where[row_id]})
    assert got == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # the buckets are gone


def test_ids_whose_hashes_share_a_bucket_are_still_told_apart(tmp_path, monkeypatch):
    monkeypatch.setattr(positions, "id_hashes", lambda ids: np.zeros(len(ids), dtype=np.int64))
    monkeypatch.setattr(spread, "id_hashes", positions.id_hashes)
    paths = [tmp_path / f"range-{n}.parquet" for n in range(2)]
    unmatched = spread_by_position(iter([_rows(["b", "a", "z"])]), iter([pa.array(["a", "b", "c"])]), paths, 2, SCHEMA)
    assert (unmatched.count, unmatched.first) == (1, "z")
    assert pq.read_table(paths[0]).sort_by("id")[POSITION].to_pylist() == [0, 1]
    assert pq.read_table(paths[1]).num_rows == 0
