"""Which files a split names (a file, a folder, a glob) and how each is read (its format and compression from
its name), here in the process; the corpus stage reads the same files through Ray Data
(tests/integration/test_corpus_files.py)."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace

import pytest

from raydsbs.tasks import Example, RejectedRow
from raydsbs.tasks.sources import FileSplit, SourceError, read_rows, source_files, source_format


def _lines(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


@pytest.fixture
def shards(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a-0.jsonl.gz").write_bytes(gzip.compress(_lines([{"x": 0}, {"x": 1}])))
    (tmp_path / "a-1.csv").write_text("x\n2\n")
    (tmp_path / "b" / "a-2.jsonl").write_bytes(_lines([{"x": 3}]))
    for other in ("_SUCCESS", ".a-1.csv.crc", "notes.txt", "b/_temporary.jsonl"):
        (tmp_path / other).write_text("")
    return tmp_path


def test_a_folder_holds_its_data_files_at_any_depth_in_path_order_and_a_glob_what_it_matches(shards):
    assert [f.path for f in source_files(shards)] == [
        str(shards / name) for name in ("a-0.jsonl.gz", "a-1.csv", "b/a-2.jsonl")
    ]
    assert [f.name for f in source_files(f"{shards}/a-*")] == ["a-0.jsonl.gz", "a-1.csv"]
    assert [f.name for f in source_files(f"{shards}/*/a-?.jsonl")] == ["a-2.jsonl"]
    assert [f.name for f in source_files(shards / "a-1.csv")] == ["a-1.csv"]


def test_a_split_that_names_no_data_file_or_a_format_not_read_is_an_error_saying_so(shards):
    with pytest.raises(SourceError, match="no data files"):
        source_files(f"{shards}/c-*")
    with pytest.raises(SourceError, match="no such data file or folder"):
        source_files(shards / "missing")
    with pytest.raises(SourceError, match=r"notes\.txt: unknown format '\.txt'"):
        source_files(f"{shards}/notes.*")
    with pytest.raises(SourceError, match=r"unknown format '\.parquet \(gzip\)'"):
        source_format("rows.parquet.gz")
    assert source_format("TRAIN.JSONL.ZST") == (".jsonl", "zstd")


def test_compressed_lines_are_read_as_they_stream_with_their_line_numbers(tmp_path):
    path = tmp_path / "rows.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"x": 1}\n{broken\n\n[1]\n'))
    rows = list(read_rows(path))
    assert rows[0] == {"x": 1}
    assert [(r.reason, r.detail) for r in rows[1:]] == [
        ("not_json", "rows.jsonl.gz line 2: Expecting property name enclosed in double quotes"),
        ("not_an_object", "rows.jsonl.gz line 4: list"),
    ]


def test_rows_of_one_file_are_named_by_place_and_of_several_by_file_and_place(shards):
    def to_example(row, row_id):
        return Example(row_id, str(row["x"]), "0") if isinstance(row, dict) else replace(row, id=row_id)

    several = FileSplit(tuple(source_files(shards)), "t-train", to_example)
    assert [(e.id, e.question) for e in several] == [
        ("t-train-a-0-000000", "0"),
        ("t-train-a-0-000001", "1"),
        ("t-train-a-1-000000", "2"),
        ("t-train-b/a-2-000000", "3"),
    ]
    one = FileSplit(tuple(source_files(shards / "a-0.jsonl.gz")), "t-train", to_example)
    assert [e.id for e in one] == ["t-train-000000", "t-train-000001"]  # as the released rows are numbered
    broken = shards / "broken.jsonl"
    broken.write_text("{oops\n")
    (row,) = FileSplit(tuple(source_files(broken)), "t-train", to_example)
    assert isinstance(row, RejectedRow) and row.id == "t-train-000000" and row.reason == "not_json"
