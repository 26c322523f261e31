"""The corpus stage on rows made in the process (the embedded task): the row rules, the rejects, a rerun.
Rows read from data files go through Ray Data: tests/integration/test_corpus_files.py."""

import pyarrow.parquet as pq

from raydsbs.data.corpus import seen_test_ids, write_corpus
from raydsbs.report import inputs_seen_line
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


def test_held_out_rows_whose_input_train_repeats_are_counted_and_the_report_says_so(tmp_path, monkeypatch, caplog):
    good = ArithTask().load_splits(load_config(None).task)

    def with_repeats(self, config):
        splits = {split: list(rows[:6]) for split, rows in good.items()}
        train = splits["train"]
        # the same inputs as train rows but for case and spacing, under ids of their own
        splits["test"][1] = Example("t-again", "  " + train[0].question.upper(), train[0].gold)
        splits["test"][4] = Example("t-again-2", train[3].question.replace(" ", "   "), train[3].gold)
        splits["val"][2] = Example("v-again", train[5].question, train[5].gold)
        splits["test"][5] = Example("t-new", train[5].question + " Then she gives one away.", "0")  # not a repeat
        return splits

    monkeypatch.setattr(ArithTask, "load_splits", with_repeats)
    config = load_config(None, [f"output_dir={tmp_path}"])
    run = open_run(config)
    with caplog.at_level("WARNING", logger="raydsbs.data.corpus"):
        write_corpus(config.task, run, config.ray)
    corpus = run.read_summary()["corpus"]
    assert corpus["inputs_seen_in_train"] == {"val": 1, "test": 2}
    seen = pq.read_table(run.seen_in_train_file.path).to_pylist()
    assert seen == [
        {"split": "val", "id": "v-again"},
        {"split": "test", "id": "t-again"},
        {"split": "test", "id": "t-again-2"},
    ]
    assert seen_test_ids(run) == {"t-again", "t-again-2"}
    assert "2 of 6 test rows have an input a train row has too" in caplog.text
    assert inputs_seen_line(corpus) == [
        "Beware: 2 of the 6 test rows and 1 of the 6 val rows repeat a train row's input (case and spacing aside): "
        "a student may have learnt those answers, so its accuracy on them is not a held-out one (below: the "
        "accuracies without them)."
    ]
    assert inputs_seen_line({**corpus, "inputs_seen_in_train": {"val": 0, "test": 0}})[0].startswith("No validation")
    assert inputs_seen_line({"train": 6}) == []  # a run written before the corpus counted them
