"""The teacher's final step on real Parquet files, without Ray: a block written twice by a killed
run counts once, requests that were never sent (prompt too long) become rejects, and the held-out
rows are scored apart from the distillation set, whether the samples are decided in one bucket or
in several."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raydsbs import spread
from raydsbs.data.checks import question_key
from raydsbs.resolve import load_config
from raydsbs.rundir import RunDir, open_run
from raydsbs.schemas import REQUESTS
from raydsbs.teacher import outputs
from raydsbs.teacher.outputs import write_outputs


# One bucket; as many as there are inputs; and those spread over groups of two buckets first (at most two files
# written at once).
@pytest.mark.parametrize("samples_per_bucket, open_buckets", [(16384, 16), (1, 16), (1, 2)])
def test_duplicated_blocks_count_once_and_unsent_requests_are_rejects(
    tmp_path, monkeypatch, samples_per_bucket, open_buckets
):
    monkeypatch.setattr(outputs, "_SAMPLES_PER_BUCKET", samples_per_bucket)
    monkeypatch.setattr(spread, "OPEN_FILES", open_buckets)
    config = load_config(None, [f"output_dir={tmp_path}"])
    run = open_run(config)
    run.requests.mkdir(parents=True)
    requests = [
        {
            "request_id": f"r{i}#0",
            "id": f"r{i}",
            "split": "train",
            "sample": 0,
            "seed": 0,
            "question": f"Q{i}?",
            "question_key": question_key(f"Q{i}?"),
            "gold": str(i),
            "prompt": "p",
            "reason": "prompt_too_long" if i == 3 else "",
            "detail": "too long" if i == 3 else "",
        }
        for i in range(4)
    ]
    pq.write_table(pa.Table.from_pylist(requests, schema=REQUESTS), run.requests / "part-000000.parquet")
    run.generations.mkdir()
    generated = pa.Table.from_pylist(
        [
            {
                "request_id": f"r{i}#0",
                "id": f"r{i}",
                "split": "train",
                "sample": 0,
                "question": f"Q{i}?",
                "question_key": question_key(f"Q{i}?"),
                "gold": str(i),
                "completion": f" Think. So the answer is {i}.",
                "generated_tokens": 5,
                "rationale": "Think.",
                "teacher_label": str(i),
                "teacher_correct": True,
                "reason": "",
                "detail": "",
            }
            for i in range(3)
        ]
    )
    # Held-out rows: t0 repeats a train row's input (answered all the same), t1 answered wrongly, v0 validation.
    heldout = pa.Table.from_pylist(
        [
            {
                "request_id": f"{row_id}#0",
                "id": row_id,
                "split": split,
                "sample": 0,
                "question": question,
                "question_key": question_key(question),
                "gold": "7",
                "completion": f" Add. So the answer is {label}.",
                "generated_tokens": 4,
                "prompt_tokens": 30,  # the train rows' file has none: written before prompt tokens were kept
                "rationale": "Add.",
                "teacher_label": label,
                "teacher_correct": label == "7",
                "reason": "",
                "detail": "",
            }
            for row_id, split, question, label in [
                ("t0", "test", "Q1?", "7"),
                ("t1", "test", "T1?", "8"),
                ("v0", "val", "V0?", "7"),
            ]
        ]
    )
    pq.write_table(generated, run.generations / "a.parquet")
    pq.write_table(generated.slice(1, 2), run.generations / "b-written-again.parquet")
    pq.write_table(heldout, run.generations / "c-heldout.parquet")

    summary = write_outputs(config, run)
    assert not list(run.teacher.glob("selection.partial-*"))  # the bucket files are gone
    kept = pq.read_table(run.distill_file).sort_by("id").to_pylist()
    rejected = pq.read_table(run.rejects_file).to_pylist()
    assert [row["id"] for row in kept] == ["r0", "r1", "r2"]
    assert kept[0]["rationale"] == "Think." and kept[0]["question"] == "Q0?" and kept[0]["vote_share"] == 1.0
    assert [(row["id"], row["reason"], row["detail"]) for row in rejected] == [("r3", "prompt_too_long", "too long")]
    assert (summary["rows"], summary["kept"], summary["rejected"], summary["generated_tokens"]) == (
        4,
        3,
        {"prompt_too_long": 1},
        15 + 12,
    )
    assert summary["teacher_accuracy_train"] == 0.75
    assert summary["prompt_tokens"] == 3 * 30  # the held-out samples' (the older file counts none)
    scored = pq.read_table(run.heldout_file).sort_by("id").to_pylist()
    assert [(row["id"], row["split"], row["teacher_label"], row["reason"]) for row in scored] == [
        ("t0", "test", "7", ""),
        ("t1", "test", "8", ""),
        ("v0", "val", "7", ""),
    ]
    assert scored[0]["rationale"] == "Add."
    assert (summary["teacher_accuracy_test"], summary["teacher_rows_test"], summary["teacher_accuracy_val"]) == (
        0.5,
        2,
        1.0,
    )


def test_requests_built_in_an_earlier_layout_are_refused_before_the_stream(tmp_path):
    from raydsbs.config import Config
    from raydsbs.teacher.requests import write_requests

    run = RunDir(tmp_path)
    run.requests.mkdir(parents=True)
    pq.write_table(pa.table({"request_id": ["a#0"], "prompt": ["Q: 1+1?"]}), run.requests / "train-000000.parquet")
    with pytest.raises(ValueError, match=r"built by an earlier raydsbs \(no id, split, .*remove .*requests to build"):
        write_requests(Config(), run)
