"""The student's training data, tokenized once per run and shared by every training that reads it.

    student/tokenized/<key>/train.parquet   every training example of one method's rows, in id order
    student/tokenized/<key>/val.parquet     the gold-labelled validation examples

The key names everything the token ids depend on: the tokenizer, the
student's format and length limits, which targets the method learns, and the
bytes of the files the rows come from. Nothing else goes in, so the trials of
a sweep over training-set fraction, seed, λ or learning rate share one
folder: the sweep writes it before its trials start, and each trial (each of
its workers) reads it and takes its own subsample (``train.train_fraction``,
``train.seed``). A second run of the same data finds the folder and reads it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from raydsbs.config import Config
from raydsbs.rundir import RunDir
from raydsbs.student.batching import (EncodedExample, StudentFormat, TaskRow, TrainingExample, encode, needs_teacher,
                                      subsample_indices, training_examples)
from raydsbs.student.model import pretrained_source

logger = logging.getLogger(__name__)

SPLITS = ("train", "val")
_TOKENS = pa.list_(pa.int32())
_SCHEMA = pa.schema([("id", pa.string()), ("label_source", _TOKENS), ("label_target", _TOKENS), ("label_given", pa.int32()),
                     ("rationale_source", _TOKENS), ("rationale_target", _TOKENS), ("rationale_given", pa.int32())])


def _file_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()[:16]


def _source_files(config: Config, run: RunDir) -> list[Path]:
    files = [run.corpus_file("train"), run.corpus_file("val")]
    return files + [run.distill_file] if needs_teacher(config.train.method) else files


def learned_targets(config: Config) -> str:
    """What the method learns: the only part of ``train`` the token ids depend on."""
    method = config.train.method
    return f"{method}-{config.train.label_source}" if method == "step_by_step" else method


def tokenized_dir(config: Config, run: RunDir, fmt: StudentFormat) -> Path:
    """The folder of this config's tokenized examples (it may not exist yet)."""
    student = config.student
    tokenizer = pretrained_source(student) or _file_digest(run.tokenizer / "tokenizer.json")
    key = {"tokenizer": tokenizer, "format": fmt.to_dict(), "max_label_tokens": student.max_label_tokens,
           "max_rationale_tokens": student.max_rationale_tokens, "targets": learned_targets(config),
           "files": {path.name: _file_digest(path) for path in _source_files(config, run)}}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return run.student / "tokenized" / f"{learned_targets(config)}-{digest}"


def _read_rows(path: Path) -> list[dict]:
    """Rows in id order (the teacher writes its outputs as they stream), so subsamples are reproducible."""
    return pq.read_table(path).sort_by("id").to_pylist()


def _examples(config: Config, run: RunDir) -> dict[str, tuple[list[str], list[TrainingExample]]]:
    """(ids, examples) of each split: the method's training rows, and the validation rows with gold labels."""
    corpus = _read_rows(run.corpus_file("train"))
    distill = _read_rows(run.distill_file) if needs_teacher(config.train.method) else []
    train = training_examples(config.train.method, config.train.label_source, corpus, distill)
    if not train:
        raise ValueError(f"no training rows for method {config.train.method}: the teacher kept no rows in {run.distill_file}")
    train_rows = distill if needs_teacher(config.train.method) else corpus  # one example per row, in order
    val = _read_rows(run.corpus_file("val"))
    return {"train": ([row["id"] for row in train_rows], train),
            "val": ([row["id"] for row in val], [TrainingExample(row["question"], row["gold"]) for row in val])}


def _table(ids: list[str], encoded: list[EncodedExample]) -> pa.Table:
    def column(task: str, part: str) -> list:
        rows = [e.rows().get(task) for e in encoded]
        return [getattr(row, part) if row else None for row in rows]

    columns = {"id": ids}
    for task in ("label", "rationale"):
        columns |= {f"{task}_source": column(task, "source"), f"{task}_target": column(task, "target"),
                    f"{task}_given": column(task, "given")}
    return pa.Table.from_pydict(columns, schema=_SCHEMA)


def prepare_tokenized(config: Config, run: RunDir, tokenizer, fmt: StudentFormat) -> Path:
    """Tokenize the method's training and validation examples, unless the run already has them; returns the folder."""
    folder = tokenized_dir(config, run, fmt)
    if all((folder / f"{split}.parquet").is_file() for split in SPLITS):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    counts = {}
    for split, (ids, examples) in _examples(config, run).items():
        pq.write_table(_table(ids, encode(examples, tokenizer, config.student, fmt)), staging / f"{split}.parquet")
        counts[split] = len(examples)
    try:
        staging.rename(folder)
        logger.info("tokenized %d training and %d validation examples into %s", counts["train"], counts["val"], folder)
    except OSError:
        shutil.rmtree(staging)  # another trial or worker wrote the same folder first
    return folder


def _encoded(row: dict) -> EncodedExample:
    def task_row(task: str) -> TaskRow | None:
        source = row[f"{task}_source"]
        return None if source is None else TaskRow(source, row[f"{task}_target"], row[f"{task}_given"])

    return EncodedExample(task_row("label"), task_row("rationale"))


def read_tokenized(folder: Path, fraction: float, seed: int) -> tuple[list[EncodedExample], list[EncodedExample]]:
    """(train, val): the ``fraction`` of the training examples drawn by ``seed``, and every validation example."""
    train = pq.read_table(folder / "train.parquet")
    train = train.take(subsample_indices(train.num_rows, fraction, seed))
    return [_encoded(row) for row in train.to_pylist()], [_encoded(row) for row in pq.read_table(folder / "val.parquet").to_pylist()]


def training_data(config: Config, run: RunDir, tokenizer, fmt: StudentFormat) -> tuple[list[EncodedExample], list[EncodedExample]]:
    """This training's encoded (train, val) examples, tokenizing the run's rows first if nobody has yet."""
    folder = prepare_tokenized(config, run, tokenizer, fmt)
    return read_tokenized(folder, config.train.train_fraction, config.train.seed)

