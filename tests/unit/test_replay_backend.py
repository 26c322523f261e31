"""The replay backend: the file streamed once, spread by corpus range, and joined to the requests by row id."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from raydsbs import spread
from raydsbs.config import TaskConfig, TeacherConfig
from raydsbs.schemas import PASSTHROUGH
from raydsbs.teacher import replay
from raydsbs.teacher.replay import ReplayedTexts, Unusable, replay_rows, replayed


@pytest.fixture
def replay_file(tmp_path):
    rows = [
        {"id": "a", "completion": " It is 3. So the answer is 3."},
        {"completion": "no id"},
        {"id": "b", "rationale": "Because.", "label": "4"},
        {"id": "a", "completion": "again"},
        {"id": "c"},
        {"id": "elsewhere", "completion": "for a row this run does not have"},
    ]
    path = tmp_path / "replay.jsonl"
    path.write_bytes(b"".join(json.dumps(row).encode() + b"\n" for row in rows) + b"{broken\n")
    return path


def test_the_file_streams_its_usable_rows_with_their_row_numbers_and_counts_the_rest(replay_file):
    unusable = Unusable()
    rows = pa.concat_tables(replay_rows(str(replay_file), unusable))
    assert rows.select(["id", "row"]).to_pylist() == [
        {"id": "a", "row": 0},
        {"id": "b", "row": 2},
        {"id": "a", "row": 3},  # a duplicate is only known once the rows meet their corpus rows
        {"id": "elsewhere", "row": 5},
    ]
    assert rows.slice(1, 1).select(["completion", "rationale", "label"]).to_pylist() == [
        {"completion": "", "rationale": "Because.", "label": "4"}
    ]
    assert unusable.counts == {"missing_id": 1, "no_completion": 1, "not_json": 1}
    assert ("not_json", "replay.jsonl line 7: Expecting property name enclosed in double quotes") in unusable.first
    assert Unusable.read(json.dumps({"counts": unusable.counts, "first": unusable.first})) == unusable


def test_each_corpus_row_gets_the_first_replayed_row_of_its_id_range_by_range(replay_file, tmp_path, monkeypatch):
    monkeypatch.setattr(replay, "RANGE_ROWS", 2)  # five corpus rows: three ranges
    monkeypatch.setattr(spread, "OPEN_FILES", 2)  # and through group files
    corpus_ids = [pa.array(["x", "b"]), pa.array(["a", "y", "z"])]  # two splits, one after another
    teacher = TeacherConfig(backend="replay", replay_file=str(replay_file))
    texts = ReplayedTexts(teacher, TaskConfig(), iter(corpus_ids), 5, tmp_path)
    assert len(texts.paths) == 3
    first = texts.texts(0, 3).to_pydict()  # across a range's end
    assert first["replayed"] == [False, True, True]
    assert first["replay_completion"] == ["", "", " It is 3. So the answer is 3."]
    assert first["replay_rationale"] == ["", "Because.", ""] and first["replay_label"] == ["", "4", ""]
    rest = texts.texts(3, 2).to_pydict()
    assert rest["replayed"] == [False, False] and rest["replay_completion"] == ["", ""]
    assert texts.unusable.counts == {"missing_id": 1, "no_completion": 1, "not_json": 1, "duplicate_id": 1}
    assert ("duplicate_id", "replay.jsonl row 3: id 'a' again (the first is used)") in texts.unusable.first
    assert (texts.used, texts.elsewhere) == (2, 1)


def test_a_replay_file_with_no_usable_row_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text(json.dumps({"id": "a"}) + "\n")
    with pytest.raises(ValueError, match="no rows with id and completion"):
        ReplayedTexts(
            TeacherConfig(backend="replay", replay_file=str(path)), TaskConfig(), iter([pa.array(["a"])]), 1, tmp_path
        )


def test_the_backend_copies_what_each_request_carries_and_names_the_missing_ones():
    ids = np.array(["b", "zzz", "a"], dtype=object)
    batch = {column: ids if column == "id" else np.array([column] * 3, dtype=object) for column in PASSTHROUGH}
    batch |= {
        "replay_completion": np.array(["", "", " It is 3."], dtype=object),
        "replay_rationale": np.array(["Because.", "", ""], dtype=object),
        "replay_label": np.array(["4", "", ""], dtype=object),
        "replayed": np.array([True, False, True]),
    }
    out = replayed(batch)
    assert list(out["completion"]) == ["", "", " It is 3."]
    assert list(out["given_rationale"]) == ["Because.", "", ""] and list(out["given_label"]) == ["4", "", ""]
    assert list(out["error"]) == ["", "no replayed completion has this id", ""]
    assert list(out["id"]) == ["b", "zzz", "a"] and list(out["generated_tokens"]) == [0, 0, 0]
