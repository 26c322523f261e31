"""The teacher stage's outputs, from its generations: vote, filter and de-duplicate each row's samples into
``teacher/distill.parquet`` and ``teacher/rejects.parquet`` (train rows) and ``teacher/heldout.parquet``
(validation and test rows, scored), bucket by bucket so that the driver's memory does not grow with the
corpus. The decisions themselves (the vote, the filters) are ``selection.py``'s.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from raydsbs.config import Config
from raydsbs.failpoints import passing
from raydsbs.rundir import RunDir
from raydsbs.schemas import DISTILL, HELDOUT, SAMPLES, TEACHER_REJECTS
from raydsbs.spread import spread
from raydsbs.staging import scratch_folder, written_whole
from raydsbs.tasks import get_task
from raydsbs.teacher.backends import BACKEND_ERROR_REASON
from raydsbs.teacher.selection import Sample, select_rows


def _filled(table: pa.Table, columns: list[str]) -> pa.Table:
    """``columns`` of ``table``, those it lacks blank: an unsent request's outputs, or the prompt tokens of a
    generation file written before they were kept."""
    blank = {"completion": "", "rationale": "", "teacher_label": "", "generated_tokens": 0, "prompt_tokens": 0}
    for column in columns:
        if column not in table.column_names:
            values = pa.array([blank.get(column, False)] * table.num_rows, type=SAMPLES.field(column).type)
            table = table.append_column(column, values)
    return table.select(columns)


def _sample_batches(run: RunDir, columns: list[str]):
    """Record batches of every parsed sample, then of the requests that were never sent (as unparsed samples).

    The stage writes a file per teacher.rows_per_checkpoint rows; they are read one at a time, in name
    order (a dataset scan over thousands of small files kept several times their size in the driver)."""
    for file in run.generations.glob("*.parquet"):
        generations = pq.ParquetFile(file.path, filesystem=file.fs)
        present = [column for column in columns if column in generations.schema_arrow.names]
        for batch in generations.iter_batches(columns=present):
            yield from _filled(pa.Table.from_batches([batch]), columns).to_batches()
    requests = pads.dataset(run.requests.path, filesystem=run.root.fs, format="parquet")
    unsent = requests.to_table(
        columns=[c for c in columns if c in requests.schema.names],  # never the prompts
        filter=pc.field("reason") != "",
    )
    if unsent.num_rows:
        yield from _filled(unsent, columns).to_batches()


_ROWS_AT_ONCE = 8192  # rows turned into Python objects at a time by the selection
_SAMPLES_PER_BUCKET = 16384  # samples decided at once: this, not the corpus, bounds the driver's memory
_SAMPLE_COLUMNS = SAMPLES.names
_LONG_COLUMNS = ["question", "rationale", "completion"]  # left on disk while a bucket is decided
_SHORT_COLUMNS = [column for column in _SAMPLE_COLUMNS if column not in _LONG_COLUMNS]
_TEXT_COLUMNS = ["id", "gold", *_LONG_COLUMNS]  # what the output files take from the samples themselves
# One decision per row, in the selection's scratch files (not an output): where its sample is, and what was decided.
_DECIDED = pa.schema(
    [
        ("position", pa.int64()),
        *[
            SAMPLES.field(name)
            for name in ("request_id", "split", "reason", "detail", "teacher_label", "teacher_correct")
        ],
        DISTILL.field("vote_share"),
        DISTILL.field("samples"),
    ]
)


def _in_tables(run: RunDir, columns: list[str]):
    """The samples' ``columns`` as tables of about _ROWS_AT_ONCE rows, in file order (the stage writes a
    file per teacher.rows_per_checkpoint rows; one table each would cost more than its rows)."""

    def joined(batches: list[pa.RecordBatch]) -> pa.Table:  # parsed and unsent samples' types may differ
        tables = [pa.Table.from_batches([batch]) for batch in batches]
        return pa.concat_tables(tables, promote_options="permissive").combine_chunks()

    pending, count = [], 0
    for batch in _sample_batches(run, columns):
        pending.append(batch)
        count += batch.num_rows
        if count >= _ROWS_AT_ONCE:
            yield joined(pending)
            pending, count = [], 0
    if pending:
        yield joined(pending)


def _into_buckets(run: RunDir, staging: Path) -> list[Path]:
    """Every sample, spread over bucket files of about _SAMPLES_PER_BUCKET by the hash of its input: a
    row's samples, a repeated input and a block written twice by a killed run share a bucket, so each
    bucket is decided on its own (with few files open at once: :func:`raydsbs.spread.spread`)."""
    sent = sum(pq.read_metadata(file.path, filesystem=file.fs).num_rows for file in run.generations.glob("*.parquet"))
    requests = pads.dataset(run.requests.path, filesystem=run.root.fs, format="parquet")
    unsent = requests.count_rows(filter=pc.field("reason") != "")
    buckets = max(1, -(-(sent + unsent) // _SAMPLES_PER_BUCKET))
    paths = [staging / f"bucket-{number:05d}.parquet" for number in range(buckets)]
    tables = (table.select(_SAMPLE_COLUMNS).cast(SAMPLES) for table in _in_tables(run, _SAMPLE_COLUMNS))
    spread(tables, paths, lambda table: table["question_key"].to_numpy() % buckets, SAMPLES)
    return paths


def _with_texts(path: Path, decided: pa.Table):
    """The chosen samples' rows of a bucket file, a row group at a time, with their decisions (sorted by
    position): the long texts are never all in memory."""
    positions = decided["position"].to_numpy()
    bucket, offset = pq.ParquetFile(path), 0
    for group in range(bucket.num_row_groups):
        table = bucket.read_row_group(group, columns=_TEXT_COLUMNS)
        low, high = np.searchsorted(positions, [offset, offset + table.num_rows])
        if high > low:
            chosen = table.take(pa.array(positions[low:high] - offset))
            yield chosen, decided.slice(low, high - low)
        offset += table.num_rows


def _once_per_request(samples: pa.Table) -> pa.Table:
    """Each request id once (the first; a block written twice by a killed run counts once), with its position."""
    samples = samples.append_column("position", pa.array(np.arange(samples.num_rows), pa.int64()))
    firsts = samples.group_by("request_id", use_threads=False).aggregate([("position", "min")])["position_min"]
    return samples.filter(pc.is_in(samples["position"], value_set=firsts.combine_chunks()))


def _in_id_order(samples: pa.Table):
    """The samples as :class:`Sample` records sorted by (id, sample), a slice at a time."""
    samples = samples.sort_by([("id", "ascending"), ("sample", "ascending")]).select(list(Sample._fields))
    for start in range(0, samples.num_rows, _ROWS_AT_ONCE):
        for row in samples.slice(start, _ROWS_AT_ONCE).to_pylist():
            yield Sample(**row)


def _decide(samples: pa.Table, config: Config) -> pa.Table:
    """One decision per row as Arrow columns, in the samples' order; each split decided on its own (a test row
    repeating a train row's input is still answered)."""
    rules = get_task(config.task.name).completion_rules(config.task.parser)
    schema = _DECIDED
    chunks, rows = [], []
    for split in pc.unique(samples["split"]).to_pylist():
        for decision in select_rows(_in_id_order(samples.filter(pc.field("split") == split)), rules, config.teacher):
            chosen = decision.sample
            rows.append(
                {
                    **decision._asdict(),
                    "position": chosen.position,
                    "request_id": chosen.request_id,
                    "split": split,
                    "teacher_label": chosen.teacher_label,
                }
            )
            if len(rows) == _ROWS_AT_ONCE:
                chunks.append(pa.Table.from_pylist(rows, schema=schema))
                rows = []
    chunks.append(pa.Table.from_pylist(rows, schema=schema))
    return pa.concat_tables(chunks).sort_by("position")


def _counts(column: pa.ChunkedArray) -> dict[str, int]:
    """How often each non-empty value occurs, by value."""
    counted = pc.value_counts(column.filter(pc.not_equal(column, ""))).to_pylist()
    return dict(sorted((entry["values"], entry["counts"]) for entry in counted))


def _output(rows: pa.Table, decisions: pa.Table, schema: pa.Schema) -> pa.Table:
    """The output file's columns: the decision's where it has them, the sample's texts otherwise."""
    return pa.table(
        [
            (decisions if name in decisions.column_names else rows)[name].cast(schema.field(name).type)
            for name in schema.names
        ],
        schema=schema,
    )


def _tally_heldout(decided: pa.Table, heldout: dict[str, list[int]], backend_error: str) -> None:
    """Add a bucket's held-out rows to ``heldout``: per split, rows, correct answers, rows the backend answered."""
    for split, tally in heldout.items():
        part = decided.filter(pc.field("split") == split)
        tally[0] += part.num_rows
        tally[1] += pc.sum(part["teacher_correct"].cast(pa.int64())).as_py() or 0
        tally[2] += part.num_rows - part.filter(pc.field("reason") == backend_error).num_rows


def _heldout_accuracy(tally: list[int]) -> float | None:
    """correct / rows of a held-out split; None when the backend answered none of its rows."""
    rows, correct, answered = tally
    return round(correct / rows, 4) if answered else None


def write_outputs(config: Config, run: RunDir) -> dict:
    """Vote, filter and de-duplicate the samples into distill.parquet and rejects.parquet (train rows) and
    heldout.parquet (validation and test rows, scored); returns the counts.

    Two passes, so the driver's memory does not grow with the corpus: the samples are spread over bucket
    files by their input's hash, then each bucket is decided on its short columns and its chosen rows'
    texts are streamed out a row group at a time. Rows are in id order when read back sorted (the
    trainer does); the files hold them bucket by bucket.
    """
    rows = kept = correct = tokens = prompt_tokens = 0
    rejected, rejected_samples = Counter(), Counter()
    heldout = {split: [0, 0, 0] for split in ("val", "test")}  # rows, correct, answered by the backend
    backend_error = BACKEND_ERROR_REASON[config.teacher.backend]
    # The three files appear together at the end, each whole; the buckets are scratch.
    with (
        scratch_folder(run.teacher / "selection") as staging,
        written_whole(run.distill_file, folder=False, replace=True) as distill_path,
        written_whole(run.rejects_file, folder=False, replace=True) as rejects_path,
        written_whole(run.heldout_file, folder=False, replace=True) as heldout_path,
        # closed (in reverse order) before the files above are renamed into place
        pq.ParquetWriter(distill_path, DISTILL) as distill,
        pq.ParquetWriter(rejects_path, TEACHER_REJECTS) as rejects,
        pq.ParquetWriter(heldout_path, HELDOUT) as scored,
    ):
        for path in _into_buckets(run, staging):
            passing("selection:bucket")
            samples = _once_per_request(pq.read_table(path, columns=_SHORT_COLUMNS))
            decided = _decide(samples, config)
            for chosen, decisions in _with_texts(path, decided):
                train, usable = pc.equal(decisions["split"], "train"), pc.equal(decisions["reason"], "")
                for writer, rows_of, schema in (
                    (distill, pc.and_(train, usable), DISTILL),
                    (rejects, pc.and_(train, pc.invert(usable)), TEACHER_REJECTS),
                    (scored, pc.invert(train), HELDOUT),
                ):
                    writer.write_table(_output(chosen.filter(rows_of), decisions.filter(rows_of), schema))
            _tally_heldout(decided, heldout, backend_error)
            decided = decided.filter(pc.field("split") == "train")
            bucket_rejected = _counts(decided["reason"])
            rows += decided.num_rows
            kept += decided.num_rows - sum(bucket_rejected.values())
            correct += pc.sum(decided["teacher_correct"].cast(pa.int64())).as_py() or 0
            tokens += pc.sum(samples["generated_tokens"]).as_py() or 0
            prompt_tokens += pc.sum(samples["prompt_tokens"]).as_py() or 0
            rejected.update(bucket_rejected)
            rejected_samples.update(_counts(samples.filter(pc.field("split") == "train")["reason"]))
    summary = {
        "rows": rows,
        "kept": kept,
        "rejected": dict(sorted(rejected.items())),
        "teacher_accuracy_train": round(correct / rows, 4) if rows else 0.0,
        "generated_tokens": tokens,
        "prompt_tokens": prompt_tokens,
        "samples_per_row": config.teacher.samples,
    }
    for split, tally in heldout.items():
        if tally[0]:
            summary[f"teacher_rows_{split}"] = tally[0]
            summary[f"teacher_accuracy_{split}"] = _heldout_accuracy(tally)
    if config.teacher.samples > 1:
        summary["rejected_samples"] = dict(sorted(rejected_samples.items()))
    return summary
