"""The student's training data, tokenized once per run and shared by every training that reads it.

    student/tokenized/<key>/train.parquet   every train row's targets for one method, in the corpus's order
                                            (a row the teacher rejected has no rationale, maybe no label)
    student/tokenized/<key>/val.parquet     the validation examples: gold labels (cot_finetune: the
                                            teacher's rationales on the validation rows, then the gold label)

The key names everything the token ids depend on: the tokenizer, the
student's format and length limits, which targets the method learns, and the
bytes of the files the rows come from. Nothing else goes in, so the trials of
a sweep over training-set fraction, seed, λ or learning rate share one
folder: the sweep writes it before its trials start, and each trial (each of
its workers) reads it and takes its own subsample (``train.train_fraction``,
``train.seed``) of the train rows: every method draws the same rows at the same
fraction and seed, and keeps those it has a target for. A second run of the
same data finds the folder and reads it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raydsbs.config import Config, StudentConfig
from raydsbs.ray_session import start_ray
from raydsbs.rundir import RunDir
from raydsbs.schemas import TOKENIZED
from raydsbs.spread import POSITION, spread_by_position
from raydsbs.staging import committed, scratch_folder, written_whole
from raydsbs.storage import Location
from raydsbs.student.batching import (
    OBJECTIVES,
    EncodedExample,
    StudentFormat,
    TrainingExample,
    encode,
    needs_teacher,
    training_examples,
)
from raydsbs.student.ingest import EncodedRows, TrainRows, read_tokenized
from raydsbs.student.model import pretrained_source
from raydsbs.tasks import get_task

logger = logging.getLogger(__name__)

SPLITS = ("train", "val")


def _file_digest(file: Location) -> str:
    digest = hashlib.sha256()
    with file.fs.open_input_stream(file.path) as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _source_files(config: Config, run: RunDir) -> list[Location]:
    files = [run.corpus_file("train"), run.corpus_file("val")]
    if config.train.method == "cot_finetune":
        files.append(run.heldout_file)  # its validation targets are the teacher's rationales
    return files + [run.distill_file] if needs_teacher(config.train.method) else files


def learned_targets(config: Config) -> str:
    """What the method learns: the only part of ``train`` the token ids depend on."""
    method = config.train.method
    return f"{method}-{config.train.label_source}" if method in ("step_by_step", "cot_finetune") else method


def label_tokens(config: Config) -> int:
    """How long a label target may be: a label's limit, or a whole chain's for cot_finetune."""
    student = config.student
    if config.train.method == "cot_finetune":
        return student.max_rationale_tokens + student.max_label_tokens
    return student.max_label_tokens


def tokenized_dir(config: Config, run: RunDir, fmt: StudentFormat) -> Location:
    """The folder of this config's tokenized examples (it may not exist yet)."""
    student = config.student
    tokenizer = pretrained_source(student) or _file_digest(run.tokenizer / "tokenizer.json")
    key = {
        "tokenizer": tokenizer,
        "format": fmt.to_dict(),
        "max_label_tokens": student.max_label_tokens,
        "max_rationale_tokens": student.max_rationale_tokens,
        "targets": learned_targets(config),
        "files": {path.name: _file_digest(path) for path in _source_files(config, run)},
        "columns": TOKENIZED.names,  # a folder written in another layout is not read as this one
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return run.student / "tokenized" / f"{learned_targets(config)}-{digest}"


def _read_rows(file: Location) -> list[dict]:
    """Rows in id order (the teacher writes its outputs as they stream), so subsamples are reproducible."""
    return _read(file).sort_by("id").to_pylist()


def _read(file: Location) -> pa.Table:
    return pq.read_table(file.path, filesystem=file.fs)


CHUNK_ROWS = 8192  # train rows made into Python objects and encoded at a time (one row group of the output)
RANGE_ROWS = 65536  # consecutive train rows joined with their teacher rows at a time: what the driver holds


def _train_ranges(config: Config, run: RunDir, scratch: Path) -> Iterator[pa.Table]:
    """The train rows in the corpus's order, RANGE_ROWS consecutive rows at a time, each joined with those of
    its rows the teacher kept (their rationale and label, and ``kept``), which were first spread over one
    scratch file per range (the teacher writes them in its own order): the driver holds a range at a time,
    whatever the corpus's size."""
    corpus = pq.ParquetFile(run.corpus_file("train").path, filesystem=run.root.fs)
    teacher_rows = _kept_by_range(run, scratch) if needs_teacher(config.train.method) else None
    for number, batch in enumerate(corpus.iter_batches(batch_size=RANGE_ROWS, columns=["id", "question", "gold"])):
        rows = pa.Table.from_batches([batch])
        yield _joined(rows, teacher_rows[number]) if teacher_rows is not None else rows


@dataclass
class _Encoding:
    """What turns train rows into a training's examples: sent once to the tasks that encode the ranges."""

    method: str
    label_source: str
    marker: str
    tokenizer: object
    student: StudentConfig
    fmt: StudentFormat
    limit: int


def _encode_range(rows: pa.Table, job: _Encoding) -> tuple[pa.Table, int]:
    """One range of train rows encoded, CHUNK_ROWS rows made into Python objects at a time; (the TOKENIZED
    rows, how many of them are examples)."""
    tables, examples_made = [], 0
    for start in range(0, rows.num_rows, CHUNK_ROWS):
        chunk = rows.slice(start, CHUNK_ROWS).to_pylist()
        kept = [row for row in chunk if row.get("kept")]
        examples = training_examples(job.method, job.label_source, chunk, kept, job.marker)
        encoded = encode(examples, job.tokenizer, job.student, job.fmt, job.limit)
        tables.append(_table([row["id"] for row in chunk], encoded))
        examples_made += sum(1 for e in encoded if e)
    return pa.concat_tables(tables), examples_made


def _encoded_in_order(ranges: Iterator[pa.Table], job: _Encoding) -> Iterator[tuple[pa.Table, int]]:
    """Each range encoded by a Ray task (one CPU each, as many at once as the cluster has CPUs; the encoding
    sent once through the object store), handed back in the ranges' order."""
    import ray

    encode_remote = ray.remote(num_cpus=1)(_encode_range)
    job_ref, pending = ray.put(job), deque()
    in_flight = max(1, int(ray.cluster_resources().get("CPU", 1)))
    for rows in ranges:
        pending.append(encode_remote.remote(rows, job_ref))
        if len(pending) >= in_flight:
            yield ray.get(pending.popleft())
    while pending:
        yield ray.get(pending.popleft())


# The teacher's kept rows as the scratch files of a range hold them (not an output: no schema in schemas.py).
KEPT = pa.schema([*[(name, pa.string()) for name in ("id", "rationale", "teacher_label")], (POSITION, pa.int64())])


def _kept_by_range(run: RunDir, scratch: Path) -> list[Path]:
    """The teacher's kept rows (id, rationale, teacher_label), one scratch file per range of corpus positions
    (``position // RANGE_ROWS``; maybe empty), each with its rows' corpus positions."""
    corpus = pq.ParquetFile(run.corpus_file("train").path, filesystem=run.root.fs)
    paths = [scratch / f"kept-{n:06d}.parquet" for n in range(max(1, -(-corpus.metadata.num_rows // RANGE_ROWS)))]
    distill = pq.ParquetFile(run.distill_file.path, filesystem=run.root.fs)
    kept = (pa.Table.from_batches([batch]) for batch in distill.iter_batches(columns=KEPT.names[:-1]))
    ids = (batch["id"] for batch in corpus.iter_batches(columns=["id"]))
    unmatched = spread_by_position(kept, ids, paths, RANGE_ROWS, KEPT)
    if unmatched.count:
        raise ValueError(
            f"{run.distill_file} holds row {unmatched.first!r} ({unmatched.count} rows in all), "
            "which corpus/train.parquet does not"
        )
    return paths


def _joined(rows: pa.Table, kept_file: Path) -> pa.Table:
    """``rows`` (consecutive corpus rows) with the teacher's rationale and label where it kept the row, and
    ``kept``; in the corpus's order."""
    kept = pq.read_table(kept_file, columns=KEPT.names[:-1])
    kept = kept.append_column("kept", pa.array(np.ones(kept.num_rows, dtype=bool)))
    rows = rows.append_column("order", pa.array(np.arange(rows.num_rows)))
    return rows.join(kept, "id", join_type="left outer").sort_by("order").drop_columns("order")


def _val_examples(config: Config, run: RunDir) -> tuple[list[str], list[TrainingExample]]:
    """(ids, examples) of the validation rows: gold labels (cot_finetune: the teacher's chain, then the gold
    label, its own kind of target)."""
    val = _read_rows(run.corpus_file("val"))
    if config.train.method != "cot_finetune":
        return [row["id"] for row in val], [TrainingExample(row["question"], row["gold"]) for row in val]
    marker = get_task(config.task.name).answer_marker
    heldout = _read(run.heldout_file).filter(pc.field("reason") == "").to_pylist()
    examples = training_examples(config.train.method, "gold", val, heldout, marker)
    if all(example.label is None for example in examples):
        raise ValueError(
            f"cot_finetune selects its checkpoint on the teacher's rationales for the validation rows, "
            f"and {run.heldout_file} keeps none: the teacher must answer them (a replay file needs "
            f"the validation rows' ids too)"
        )
    return [row["id"] for row in val], examples


def _table(ids: list[str], encoded: list[EncodedExample | None]) -> pa.Table:
    def column(task: str, part: str) -> list:
        rows = [e.rows().get(task) if e else None for e in encoded]
        return [getattr(row, part) if row else None for row in rows]

    columns = {"id": ids}
    for task in OBJECTIVES:
        columns |= {
            f"{task}_prompt": column(task, "source"),
            f"{task}_target": column(task, "target"),
            f"{task}_given": column(task, "given"),
        }
    return pa.Table.from_pydict(columns, schema=TOKENIZED)


def prepare_tokenized(config: Config, run: RunDir, tokenizer, fmt: StudentFormat) -> Location:
    """Tokenize the method's training and validation examples, unless the run already has them; returns the folder.
    The train rows go a range at a time to Ray tasks (:func:`_encoded_in_order`) and come back in order, written
    a chunk per row group: the driver holds Arrow tables of a few ranges, never their Python objects."""
    folder = tokenized_dir(config, run, fmt)
    if committed(folder):
        return folder
    start_ray(config.ray)
    method, limit = config.train.method, label_tokens(config)
    marker = get_task(config.task.name).answer_marker
    job = _Encoding(method, config.train.label_source, marker, tokenizer, config.student, fmt, limit)
    counts = {"train": 0}
    with (
        scratch_folder(folder) as scratch,
        written_whole(folder) as staging,  # if another trial wrote the same folder first, it stays
        pq.ParquetWriter(staging / "train.parquet", TOKENIZED) as writer,
    ):
        for table, examples_made in _encoded_in_order(_train_ranges(config, run, scratch), job):
            writer.write_table(table, row_group_size=CHUNK_ROWS)
            counts["train"] += examples_made
        if not counts["train"]:
            raise ValueError(f"no training rows for method {method}: the teacher kept no rows in {run.distill_file}")
        ids, examples = _val_examples(config, run)
        encoded = encode(examples, tokenizer, config.student, fmt, limit)
        pq.write_table(_table(ids, encoded), staging / "val.parquet")
        counts["val"] = sum(1 for e in encoded if e)
    logger.info("tokenized %d training and %d validation examples into %s", counts["train"], counts["val"], folder)
    return folder


def training_data(config: Config, run: RunDir, tokenizer, fmt: StudentFormat) -> tuple[TrainRows, EncodedRows]:
    """This training's encoded (train, val) examples, tokenizing the run's rows first if nobody has yet."""
    folder = prepare_tokenized(config, run, tokenizer, fmt)
    return read_tokenized(folder, config.train.train_fraction, config.train.seed)
