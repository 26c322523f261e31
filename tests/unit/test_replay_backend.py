"""The replay backend's file and lookup: Arrow columns and an index of their ids, not a dict of rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from raydsbs.config import TaskConfig, TeacherConfig
from raydsbs.schemas import PASSTHROUGH
from raydsbs.teacher.replay import ReplayLookup, read_replay_file


@pytest.fixture
def replay_file(tmp_path):
    rows = [
        {"id": "a", "completion": " It is 3. So the answer is 3."},
        {"completion": "no id"},
        {"id": "b", "rationale": "Because.", "label": "4"},
        {"id": "a", "completion": "again"},
        {"id": "c"},
    ]
    path = tmp_path / "replay.jsonl"
    path.write_bytes(b"".join(json.dumps(row).encode() + b"\n" for row in rows) + b"{broken\n")
    return path


def test_a_replay_file_keeps_the_first_row_of_each_id_and_counts_the_rest_by_reason(replay_file):
    read = read_replay_file(str(replay_file))
    assert read.rows.to_pylist() == [
        {"id": "a", "completion": " It is 3. So the answer is 3.", "rationale": "", "label": ""},
        {"id": "b", "completion": "", "rationale": "Because.", "label": "4"},
    ]
    assert read.unusable == {"missing_id": 1, "no_completion": 1, "not_json": 1, "duplicate_id": 1}
    checked = read_replay_file(str(replay_file), texts=False)  # what the driver checks: ids and counts only
    assert checked.rows["id"].to_pylist() == ["a", "b"] and checked.rows["completion"].null_count == 2
    assert checked.unusable == read.unusable
    assert ("duplicate_id", "replay.jsonl row 3: id 'a' again (the first is used)") in read.first_unusable
    assert ("not_json", "replay.jsonl line 6: Expecting property name enclosed in double quotes") in (
        read.first_unusable
    )


def test_the_lookup_fills_in_each_row_by_id_and_names_the_missing_ones(replay_file):
    lookup = ReplayLookup(TeacherConfig(backend="replay", replay_file=str(replay_file)), TaskConfig())
    ids = np.array(["b", "zzz", "a"], dtype=object)
    batch = {column: ids if column == "id" else np.array([column] * 3, dtype=object) for column in PASSTHROUGH}
    out = lookup(batch)
    assert list(out["completion"]) == ["", "", " It is 3. So the answer is 3."]
    assert list(out["given_rationale"]) == ["Because.", "", ""] and list(out["given_label"]) == ["4", "", ""]
    assert list(out["error"]) == ["", "no replayed completion has this id", ""]
    assert list(out["id"]) == ["b", "zzz", "a"]
