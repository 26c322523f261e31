"""The corpus stage on data files, read and checked through Ray Data on a real local cluster: the seeded carve
of validation, the first rows of each split, duplicates; a split of several files (a folder, a glob, compressed
lines, Parquet, CSV), local or in a bucket on the stand-in S3 server; a file unreadable as a whole."""

import gzip
import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raydsbs.data import corpus
from raydsbs.data.corpus import write_corpus
from raydsbs.resolve import load_config
from raydsbs.rundir import open_run
from raydsbs.tasks.sources import SourceError

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_ray")]


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
    return config, run, write_corpus(config.task, run, config.ray)


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


def _shards(folder, rows: list[dict]) -> None:
    """``rows`` over four shards of three formats, in name order, with files that are not data beside them."""
    folder.mkdir(parents=True)

    def lines(part: list[dict]) -> str:
        return "".join(json.dumps(row) + "\n" for row in part)

    (folder / "part-0.jsonl.gz").write_bytes(gzip.compress(lines(rows[:4]).encode()))
    pq.write_table(pa.Table.from_pylist(rows[4:9]), folder / "part-1.parquet")
    (folder / "part-2.csv").write_text("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in rows[9:12]))
    (folder / "nested").mkdir()
    (folder / "nested" / "part-3.jsonl").write_text(lines(rows[12:]))
    (folder / "_SUCCESS").write_text("")
    (folder / ".part-0.jsonl.gz.crc").write_text("")
    (folder / "README.md").write_text("not data")


def test_a_split_of_several_files_is_read_in_path_order_with_rows_named_by_their_file(tmp_path):
    """A folder of shards (gzipped JSON lines, Parquet, CSV, one in a subfolder; files that are not data left
    out): one read task per file, the rows back in the order of the files' paths; a row without an id column is
    named by its file and place in it. A glob takes the files it matches."""
    rows = [{"text": f"review {i}", "label": "positive" if i % 2 else "negative"} for i in range(15)]
    rows[5]["label"] = "maybe"  # the second row of part-1.parquet
    _shards(tmp_path / "shards", rows)
    spec = tmp_path / "sentiment.yaml"
    spec.write_text(SENTIMENT.replace("id_column: id\n", ""))
    config = load_config(
        None,
        [
            f"output_dir={tmp_path / 'runs'}",
            f"task.name={spec}",
            "teacher.num_shots=1",
            f"task.train_file={tmp_path / 'shards'}",
            f"task.val_file={tmp_path / 'shards' / 'part-[12].*'}",
            f"task.test_file={tmp_path / 'shards' / 'nested'}",
            "task.num_val=3",
        ],
    )
    run = open_run(config)
    counts = write_corpus(config.task, run, config.ray)
    assert counts == {"train": 14, "val": 3, "test": 3}
    train = pq.read_table(run.corpus_file("train")).to_pylist()
    in_path_order = [*range(12, 15), *range(12)]  # nested/part-3.jsonl sorts before part-0.jsonl.gz
    assert [row["question"] for row in train] == [f"Review: review {i}" for i in in_path_order if i != 5]
    assert [row["id"] for row in train[:9]] == [
        *(f"sentiment-train-nested/part-3-{i:06d}" for i in range(3)),
        *(f"sentiment-train-part-0-{i:06d}" for i in range(4)),
        "sentiment-train-part-1-000000",
        "sentiment-train-part-1-000002",
    ]
    val = pq.read_table(run.corpus_file("val")).to_pylist()
    assert [row["question"] for row in val] == ["Review: review 4", "Review: review 6", "Review: review 7"]
    test = pq.read_table(run.corpus_file("test")).to_pylist()  # one file: named as a one-file split always was
    assert [row["id"] for row in test] == [f"sentiment-test-{i:06d}" for i in range(3)]
    rejects = pq.read_table(run.corpus / "rejects.parquet").to_pylist()
    assert [(r["id"], r["split"], r["reason"]) for r in rejects] == [
        ("sentiment-train-part-1-000001", "train", "unknown_label"),
        ("sentiment-val-part-1-000001", "val", "unknown_label"),
    ]


def test_shards_in_a_bucket_are_read_on_the_cluster_like_local_ones(tmp_path, bucket):
    """The same shards uploaded to a bucket on the stand-in S3 server (credentials and endpoint from the
    environment only): the corpus is the one the local folder gives."""
    import pyarrow.fs as pafs

    from raydsbs.storage import location, upload

    rows = [{"text": f"review {i}", "label": "positive" if i % 3 else "negative"} for i in range(15)]
    _shards(tmp_path / "shards", rows)
    upload(tmp_path / "shards", location(f"{bucket}/corpus/shards"))
    assert location(f"{bucket}/corpus/shards/nested/part-3.jsonl").is_file()
    corpora = {}
    for where, root in {"local": str(tmp_path / "shards"), "bucket": f"{bucket}/corpus/shards"}.items():
        (tmp_path / where).mkdir()
        _, run, counts = _sentiment_run(
            tmp_path / where, {"test": rows[:2]}, f"task.train_file={root}", "task.num_val=4", "task.seed=1"
        )
        corpora[where] = {split: pq.read_table(run.corpus_file(split)).to_pylist() for split in ("train", "val")}
    assert corpora["bucket"] == corpora["local"]
    assert len(corpora["local"]["train"]) == 11 and len(corpora["local"]["val"]) == 4
    assert isinstance(location(bucket).fs, pafs.S3FileSystem)


def test_a_file_unreadable_as_a_whole_stops_the_stage_with_the_readers_error_and_writes_nothing(tmp_path):
    """A JSON list cut short can't be read row by row: the stage fails with the reader's error naming the file
    (not Ray's wrapping of it), and no corpus appears."""
    spec = tmp_path / "sentiment.yaml"
    spec.write_text(SENTIMENT)
    (tmp_path / "train.json").write_text('[{"id": "a", "text": "fine", "label": "positive"}, {"id": ')
    (tmp_path / "test.jsonl").write_text(json.dumps({"id": "t", "text": "ok", "label": "negative"}) + "\n")
    config = load_config(
        None,
        [
            f"output_dir={tmp_path / 'runs'}",
            f"task.name={spec}",
            "teacher.num_shots=1",
            f"task.train_file={tmp_path / 'train.json'}",
            f"task.test_file={tmp_path / 'test.jsonl'}",
        ],
    )
    run = open_run(config)
    with pytest.raises(SourceError, match=r"train\.json: not a readable JSON list"):
        write_corpus(config.task, run, config.ray)
    assert not run.corpus_file("train").exists()
