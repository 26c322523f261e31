import json
import random

import pyarrow.parquet as pq

from raydsbs.data import corpus
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
    counts = write_corpus(config.task, run)
    assert counts == {"train": 5, "val": 5, "test": 5}
    rejects = pq.read_table(run.corpus / "rejects.parquet").to_pylist()
    assert [(r["id"], r["reason"]) for r in rejects] == [
        ("bad-1", "empty_question"),
        ("bad-2", "empty_gold"),
        (good["train"][0].id, "duplicate_id"),
    ]
    assert rejects[0]["detail"] == "row bad-1"
    assert run.read_summary()["corpus"]["rejected"] == {"empty_question": 1, "empty_gold": 1, "duplicate_id": 1}
    assert write_corpus(config.task, run) == counts  # a rerun keeps what was written


SENTIMENT = """\
name: sentiment
input_template: "Review: {text}"
label_column: label
id_column: id
answer: {kind: choice, choices: [negative, positive]}
exemplars:
  - {row: {text: "Great."}, rationale: "It praises it.", answer: positive}
"""


def _sentiment_run(tmp_path, rows: dict[str, list[dict]], *overrides: str):
    spec = tmp_path / "sentiment.yaml"
    spec.write_text(SENTIMENT)
    files = []
    for split, split_rows in rows.items():
        path = tmp_path / f"{split}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in split_rows))
        files.append(f"task.{split}_file={path}")
    config = load_config(
        None, [f"output_dir={tmp_path / 'runs'}", f"task.name={spec}", "teacher.num_shots=1", *files, *overrides]
    )
    run = open_run(config)
    return config, run, write_corpus(config.task, run)


def _questions(run, split: str) -> list[str]:
    return pq.read_table(run.corpus_file(split))["question"].to_pylist()


def test_validation_carved_from_train_is_the_seeded_shuffle_and_each_split_keeps_source_order(tmp_path):
    """Without a validation file, validation is the first usable rows of train shuffled by random.Random(seed),
    train the first num_train of the rest: the rows the corpus stage took when it held every row in a list.
    Both are written in the order of the file."""
    rows = [{"text": f"review {i}", "label": "positive" if i % 3 else "negative"} for i in range(300)]
    for i in range(0, 300, 7):
        rows[i] = {"text": f"review {i}", "label": "maybe"}  # unknown_label: rejected, never chosen
    _, run, counts = _sentiment_run(
        tmp_path, {"train": rows, "test": rows[:5]}, "task.num_train=100", "task.num_val=30", "task.seed=3"
    )
    shuffled = list(range(300))
    random.Random(3).shuffle(shuffled)
    usable = [i for i in shuffled if rows[i]["label"] != "maybe"]
    val, rest = usable[:30], [i for i in shuffled if i not in set(usable[:30])]
    train = [i for i in rest if rows[i]["label"] != "maybe"][:100]
    assert counts == {"train": 100, "val": 30, "test": 4}
    assert _questions(run, "val") == [f"Review: review {i}" for i in sorted(val)]
    assert _questions(run, "train") == [f"Review: review {i}" for i in sorted(train)]
    # the rejects met (in shuffled order) before the first row train did not need are reported, no later ones
    next_unneeded = rest.index([i for i in rest if rows[i]["label"] != "maybe"][100])
    met = sorted(i for i in rest[:next_unneeded] if rows[i]["label"] == "maybe")
    rejects = pq.read_table(run.corpus / "rejects.parquet").to_pylist()
    assert [(r["id"], r["split"], r["reason"]) for r in rejects] == [
        *((f"sentiment-train-{i:06d}", "train", "unknown_label") for i in met),
        ("sentiment-test-000000", "test", "unknown_label"),
    ]


def test_first_rows_of_each_split_and_an_id_seen_before_is_a_duplicate(tmp_path):
    train = [{"id": f"r{i}", "text": f"train {i}", "label": "positive"} for i in range(10)]
    train[4] = {"id": "r4", "text": "train 4", "label": "vague"}
    val = [{"id": f"v{i}", "text": f"val {i}", "label": "negative"} for i in range(3)]
    test = [{"id": "r0", "text": "again", "label": "negative"}, {"id": "t1", "text": "test 1", "label": "negative"}]
    _, run, counts = _sentiment_run(
        tmp_path, {"train": train, "val": val, "test": test}, "task.num_train=5", "task.num_val=2"
    )
    assert counts == {"train": 5, "val": 2, "test": 1}
    assert pq.read_table(run.corpus_file("train"))["id"].to_pylist() == ["r0", "r1", "r2", "r3", "r5"]
    assert pq.read_table(run.corpus_file("test"))["id"].to_pylist() == ["t1"]
    rejects = pq.read_table(run.corpus / "rejects.parquet").to_pylist()
    assert [(r["id"], r["split"], r["reason"]) for r in rejects] == [
        ("r4", "train", "unknown_label"),
        ("r0", "test", "duplicate_id"),
    ]
    assert "an earlier row has its id" in rejects[1]["detail"]


def test_ids_that_only_share_a_hash_are_not_duplicates(tmp_path, monkeypatch):
    """Duplicates are found by the ids' hashes and confirmed on the ids: with a hash that most ids share (their
    length), the same rows are kept and the same one rejected."""
    monkeypatch.setattr(corpus, "id_hash", len)
    train = [{"id": f"r{i}", "text": f"train {i}", "label": "positive"} for i in range(12)]
    test = [{"id": "r3", "text": "again", "label": "negative"}, {"id": "t1", "text": "test 1", "label": "negative"}]
    _, run, counts = _sentiment_run(tmp_path, {"train": train, "val": train[:1], "test": test}, "task.num_val=1")
    assert counts == {"train": 12, "val": 0, "test": 1}  # val's r0 and test's r3 are ids train has
    rejects = pq.read_table(run.corpus / "rejects.parquet").to_pylist()
    assert [(r["id"], r["split"], r["reason"]) for r in rejects] == [
        ("r0", "val", "duplicate_id"),
        ("r3", "test", "duplicate_id"),
    ]
