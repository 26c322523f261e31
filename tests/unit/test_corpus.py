"""The corpus stage on rows made in the process (the embedded task): the row rules, the rejects, a rerun.
Rows read from data files go through Ray Data: tests/integration/test_corpus_files.py."""

import pyarrow.parquet as pq

from raydsbs.data.corpus import write_corpus
from raydsbs.resolve import load_config
from raydsbs.rundir import open_run
from raydsbs.tasks import Example
from raydsbs.tasks.arith import ArithTask


def test_bad_rows_are_rejected_with_a_reason_and_the_rest_is_written(tmp_path, monkeypatch):
    good = ArithTask().load_splits(load_config(None).task)

    def with_bad_rows(self, config):
        splits = {split: list(rows[:5]) for split, rows in good.items()}
        splits["train"] += [
            Example("bad-1", "  ", "3"),
            Example("bad-2", "q?", ""),
            Example(good["train"][0].id, "q", "1"),
        ]
        return splits

    monkeypatch.setattr(ArithTask, "load_splits", with_bad_rows)
    config = load_config(None, [f"output_dir={tmp_path}"])
    run = open_run(config)
    counts = write_corpus(config.task, run, config.ray)
    assert counts == {"train": 5, "val": 5, "test": 5}
    rejects = pq.read_table(run.corpus / "rejects.parquet").to_pylist()
    assert [(r["id"], r["reason"]) for r in rejects] == [
        ("bad-1", "empty_question"),
        ("bad-2", "empty_gold"),
        (good["train"][0].id, "duplicate_id"),
    ]
    assert rejects[0]["detail"] == "row bad-1"
    assert run.read_summary()["corpus"]["rejected"] == {"empty_question": 1, "empty_gold": 1, "duplicate_id": 1}
    assert write_corpus(config.task, run, config.ray) == counts  # a rerun keeps what was written
