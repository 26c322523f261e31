"""Bad rows of every kind, mixed into good ones in each file format: each bad row is in corpus/rejects.parquet
with its reason, each good row is kept, and nothing crashes (files read and checked through Ray Data on a real
local cluster)."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raydsbs.data.corpus import write_corpus
from raydsbs.resolve import load_config
from raydsbs.rundir import open_run

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_ray")]

TASK = """
name: reviews
input_template: "{text}"
id_column: id
label_column: label
label_names: [negative, positive]
answer: {kind: choice, choices: [negative, positive]}
exemplars: [{question: "Great.", rationale: "Praise.", answer: positive}]
"""
MAX_CHARS = 200
BAD = "\udcff"  # stands for the byte 0xff, which is not UTF-8, until the file is written

# Each kind of row: the formats that can hold it, and the reason it is rejected with (None: kept).
KINDS = {
    "good": ({"jsonl", "json", "csv", "parquet"}, None),
    "good_label_name": ({"jsonl", "json", "csv", "parquet"}, None),
    "duplicate_id": ({"jsonl", "json", "csv", "parquet"}, "duplicate_id"),
    "no_label": ({"jsonl", "json", "csv", "parquet"}, "missing_label"),
    "unknown_label": ({"jsonl", "json", "csv", "parquet"}, "unknown_label"),
    "label_out_of_range": ({"jsonl", "json", "csv", "parquet"}, "unknown_label"),
    "blank_text": ({"jsonl", "json", "csv", "parquet"}, "empty_question"),
    "over_long_text": ({"jsonl", "json", "csv", "parquet"}, "input_too_long"),
    "undecodable_text": ({"jsonl", "json", "csv", "parquet"}, "undecodable_bytes"),
    "text_is_a_list": ({"jsonl", "json"}, "mistyped_field"),
    "label_is_a_bool": ({"jsonl", "json"}, "mistyped_field"),
    "no_text_column": ({"jsonl", "json"}, "missing_column"),
    "not_an_object": ({"jsonl", "json"}, "not_an_object"),
    "broken_json": ({"jsonl"}, "not_json"),
    "wrong_field_count": ({"csv"}, "wrong_field_count"),
}


def _row(kind: str, i: int, text: str, good_ids: list[str], fmt: str):
    """One source row of ``kind`` (a dict, or raw text for lines that are not rows)."""
    row = {"id": f"r{i}", "text": text if kind.startswith("good") else "fine", "label": 1 if fmt != "parquet" else "1"}
    if kind == "good_label_name":
        row["label"] = "negative"
    elif kind == "duplicate_id":
        row["id"] = good_ids[0]
    elif kind == "no_label":
        row["label"] = None
    elif kind == "unknown_label":
        row["label"] = "maybe"
    elif kind == "label_out_of_range":
        row["label"] = 7 if fmt != "parquet" else "7"
    elif kind == "blank_text":
        row["text"] = "   "
    elif kind == "over_long_text":
        row["text"] = "x" * (MAX_CHARS + 1)
    elif kind == "undecodable_text":
        row["text"] = f"caf{BAD}"
    elif kind == "text_is_a_list":
        row["text"] = ["a", "list"]
    elif kind == "label_is_a_bool":
        row["label"] = True
    elif kind == "no_text_column":
        del row["text"]
    elif kind == "not_an_object":
        return ["a", "list"]
    elif kind == "broken_json":
        return "{broken"
    elif kind == "wrong_field_count":
        return f"r{i},fine,1,extra"
    return row


def _encode(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogateescape")


def _write(path: Path, fmt: str, rows: list) -> None:
    if fmt == "jsonl":
        path.write_bytes(
            b"\n".join(_encode(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) for r in rows)
        )
    elif fmt == "json":
        path.write_bytes(_encode(json.dumps(rows, ensure_ascii=False)))
    elif fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["id", "text", "label"])
        for r in rows:
            if isinstance(r, str):
                out.write(r + "\n")
            else:
                writer.writerow([r["id"], r["text"], "" if r["label"] is None else r["label"]])
        path.write_bytes(_encode(out.getvalue()))
    else:  # binary text column, so that a row can hold bytes that are not UTF-8
        table = pa.table(
            {
                "id": [r["id"] for r in rows],
                "text": pa.array([_encode(r["text"]) for r in rows], pa.binary()),
                "label": pa.array([r["label"] for r in rows], pa.string()),
            }
        )
        pq.write_table(table, path)


@st.composite
def corpora(draw):
    fmt = draw(st.sampled_from(["jsonl", "json", "csv", "parquet"]))
    kinds = [kind for kind, (formats, _) in KINDS.items() if fmt in formats]
    drawn = draw(st.lists(st.sampled_from(kinds), min_size=1, max_size=30))
    texts = draw(
        st.lists(
            st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=40),
            min_size=len(drawn),
            max_size=len(drawn),
        )
    )
    return fmt, ["good", "good", *drawn], ["first good row", "second good row", *texts]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corpora())
def test_every_bad_row_is_rejected_with_its_reason_and_every_good_row_is_kept(corpus):
    fmt, kinds, texts = corpus
    good_ids: list[str] = []
    rows = []
    for i, (kind, text) in enumerate(zip(kinds, texts, strict=True)):
        if kind in ("good", "good_label_name") and text.strip():
            good_ids.append(f"r{i}")
        elif kind in ("good", "good_label_name"):
            kinds[i] = "blank_text"  # a drawn text of spaces only is a blank text
        rows.append(_row(kinds[i], i, text, good_ids, fmt))
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "reviews.yaml").write_text(TASK)
        train = root / f"train.{fmt}"
        _write(train, fmt, rows)
        (root / "test.jsonl").write_text(json.dumps({"id": "t0", "text": "Good.", "label": 1}) + "\n")
        config = load_config(
            None,
            [
                f"output_dir={root / 'runs'}",
                f"task.name={root / 'reviews.yaml'}",
                f"task.train_file={train}",
                f"task.test_file={root / 'test.jsonl'}",
                "task.num_val=1",
                "task.num_train=1000",
                f"task.max_input_chars={MAX_CHARS}",
                "teacher.num_shots=1",
            ],
        )
        run = open_run(config)
        write_corpus(config.task, run, config.ray)
        written = [row for split in ("train", "val") for row in pq.read_table(run.corpus_file(split)).to_pylist()]
        kept = {row["id"] for row in written}
        rejects = pq.read_table(run.corpus / "rejects.parquet").to_pylist()
    assert kept == set(good_ids)
    assert {row["gold"] for row in written} <= {"negative", "positive"}  # "1" in a CSV is label_names[1] too
    expected = Counter(KINDS[kind][1] for kind in kinds if KINDS[kind][1])
    assert Counter(r["reason"] for r in rejects) == expected
    assert all(r["detail"] for r in rejects)
