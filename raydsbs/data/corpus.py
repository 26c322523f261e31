"""The corpus stage: a task's examples, validated, as ``corpus/<split>.parquet``.

Row schema (written down once, here): ``id`` (str, unique), ``question``
(str, the text the teacher and the student read), ``gold`` (str, the task's
ground-truth label). Rows that break it go to ``corpus/rejects.parquet`` with
a reason and a detail naming the row (file and line for unreadable rows), and the
rest of the corpus is still written.

The rows stream through in bounded memory, however many there are:

    read + check   each split's rows, in source order, into a local staged file: data files read and checked by
                   Ray Data on the cluster (raydsbs/data/file_reads.py), other rows here (raydsbs/data/checks.py)
    choose         from its flags and ids alone: the first ``task.num_<split>`` usable rows of each split, or,
                   without a validation source, a seeded carve of train (the same rows as a shuffle of it);
                   an id seen in an earlier chosen row is a ``duplicate_id``
    write          each split's chosen rows in source order, and the rejects among them, a row group at a time
    seen in train  the validation and test rows whose input a train row has too (the same text, case and spacing
                   aside): a student may have learnt their answers; their ids in seen_in_train.parquet, their
                   counts in the log and summary; the report and the card score without them too

Only per-row flags, positions and hashes of the ids and of the written inputs (17 bytes a row) are ever held
whole.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raydsbs.config import RayConfig, TaskConfig
from raydsbs.data.checks import STAGED, TABLE_ROWS, checked_table, question_key
from raydsbs.positions import repeated_ids, seeded_permutation
from raydsbs.rundir import RunDir
from raydsbs.schemas import CORPUS, CORPUS_REJECTS, SEEN_IN_TRAIN
from raydsbs.staging import committed, scratch_folder, written_whole
from raydsbs.storage import Location
from raydsbs.tasks import SPLITS, Example, RejectedRow, get_task
from raydsbs.tasks.sources import FileSplit

logger = logging.getLogger(__name__)

ROW_GROUP_ROWS = 8192  # the unit a reader decodes at once: later stages stream the corpus a row group at a time
WARNED_REJECTS = 5  # rejects named in the log (all of them are in rejects.parquet)
id_hash = hash  # of a row's id, to find duplicates; ids that share one are compared themselves


@dataclass
class Staged:
    """One source's rows, checked, in a local Parquet file in source order; ``usable[i]``: row i can be used;
    ``hashes[i]``: the hash of its id (this process's own ``hash``: what finding duplicates needs)."""

    file: Path
    usable: np.ndarray
    hashes: np.ndarray


def _checked(source: FileSplit | Iterable[Example | RejectedRow], ray: RayConfig) -> Generator[pa.Table]:
    """A split's rows checked, a table at a time, in source order: data files through Ray Data on the cluster,
    other rows (generated, released, a hub split) here."""
    if isinstance(source, FileSplit):
        from raydsbs.data.file_reads import read_checked

        yield from read_checked(source, ray)
        return
    rows = iter(source)
    while chunk := list(islice(rows, TABLE_ROWS)):
        yield checked_table(chunk)


def _stage(tables: Generator[pa.Table], file: Path, enough: int | None = None) -> Staged:
    """Checked ``tables`` into ``file``; reading stops once a table has brought the row after the
    ``enough``-th usable one (a split that takes the first rows of its source needs no more of it)."""
    usable, hashes, count = [], [], 0
    with pq.ParquetWriter(file, STAGED) as writer:
        try:
            for table in tables:
                flags = pc.equal(table["reason"], "").to_numpy(zero_copy_only=False)
                usable.append(flags)
                hashes.append(np.fromiter(map(id_hash, table["id"].to_pylist()), np.int64, count=table.num_rows))
                writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
                count += int(flags.sum())
                if enough is not None and count > enough:
                    break
        finally:
            tables.close()  # stops Ray Data's reads of a split that has its rows
    empty = np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64)
    return Staged(file, np.concatenate(usable or [empty[0]]), np.concatenate(hashes or [empty[1]]))


def _limits(config: TaskConfig) -> dict[str, int]:
    return {"train": config.num_train, "val": config.num_val, "test": config.num_test}


def _first_usable(usable_in_order: np.ndarray, limit: int) -> int:
    """How many rows of an order, read in it, it takes to reach its ``limit``-th usable row and no further (the
    rejects among them kept, to be reported)."""
    return int(np.searchsorted(np.cumsum(usable_in_order, dtype=np.int32), limit + 1))


def _chosen(positions: np.ndarray | slice, size: int) -> np.ndarray:
    mask = np.zeros(size, dtype=bool)
    mask[positions] = True
    return mask


def choose(staged: dict[str, Staged], config: TaskConfig) -> dict[str, tuple[Staged, np.ndarray]]:
    """Per split, its source and which of the source's rows it takes.

    Without a validation source, validation is carved from train: train's rows are shuffled with
    ``random.Random(task.seed)`` (a permutation of positions, the same one a shuffle of the rows makes),
    validation takes the first ``num_val`` usable ones (at most half of them), and train the first ``num_train``
    of the rest, in that shuffled order."""
    limits = _limits(config)
    chosen = {}
    for split, source in staged.items():
        size = source.usable.size
        if split == "train" and "val" not in staged:
            order = seeded_permutation(size, config.seed)
            shuffled_usable = order[source.usable[order]]
            val = shuffled_usable[: min(config.num_val, shuffled_usable.size // 2)]
            rest = order[~_chosen(val, size)[order]]
            chosen["val"] = (source, _chosen(val, size))
            train = rest[: _first_usable(source.usable[rest], config.num_train)]
            chosen["train"] = (source, _chosen(train, size))
        else:  # the first rows of the source
            chosen[split] = (source, _chosen(slice(0, _first_usable(source.usable, limits[split])), size))
    return {split: chosen[split] for split in SPLITS}


def duplicates(chosen: dict[str, tuple[Staged, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per split, a mask over its source of the chosen usable rows whose id an earlier chosen row has (splits in
    order train, val, test; rows in source order): those are rejected as ``duplicate_id``. Found from the ids'
    hashes, made while staging; only ids whose hash another row shares are read back."""
    where = [(split, np.flatnonzero(mask & source.usable)) for split, (source, mask) in chosen.items()]
    starts = np.cumsum([0] + [positions.size for _, positions in where])

    def ids_at(rows: np.ndarray) -> pa.Array:  # rows numbered across the splits, in order
        parts = []
        for number, (split, positions) in enumerate(where):
            mine = rows[(rows >= starts[number]) & (rows < starts[number + 1])] - starts[number]
            parts.append(_ids_at(chosen[split][0].file, positions[mine]))
        return pa.concat_arrays(parts)

    hashes = np.concatenate([chosen[split][0].hashes[positions] for split, positions in where])
    repeated = repeated_ids(hashes, ids_at)
    return {
        split: _chosen(positions[repeated[starts[n] : starts[n + 1]]], chosen[split][0].usable.size)
        for n, (split, positions) in enumerate(where)
    }


def _ids_at(file: Path, positions: np.ndarray) -> pa.Array:
    """The ids of a staged file's rows at ``positions`` (sorted), read a row group at a time."""
    parts, start = [], 0
    for batch in pq.ParquetFile(file).iter_batches(batch_size=ROW_GROUP_ROWS, columns=["id"]):
        low, high = np.searchsorted(positions, [start, start + batch.num_rows])
        parts.append(batch["id"].take(pa.array(positions[low:high] - start)))
        start += batch.num_rows
    return pa.concat_arrays(parts) if parts else pa.array([], pa.string())


def _write_split(
    split: str, source: Staged, keep: np.ndarray, repeated: np.ndarray, target: Path, rejects: pq.ParquetWriter
) -> tuple[np.ndarray, Counter, list[dict]]:
    """The split's chosen usable rows into ``target`` and its chosen rejects into ``rejects``, a row group at a
    time; (the written rows' input keys, rejects by reason, the first rejects)."""
    keys, reasons, first_rejects, start = [], Counter(), [], 0
    with pq.ParquetWriter(target, CORPUS) as writer:
        # decoded on this thread: Arrow's pool threads kept memory they freed (1M rows: peak 214-237 -> 203-206 MiB)
        for batch in pq.ParquetFile(source.file).iter_batches(batch_size=ROW_GROUP_ROWS, use_threads=False):
            end = start + batch.num_rows
            chosen, usable, again = keep[start:end], source.usable[start:end], repeated[start:end]
            good = batch.filter(pa.array(chosen & usable & ~again)).select(CORPUS.names)
            writer.write_table(pa.Table.from_batches([good], CORPUS))
            keys.append(input_keys(good.column("question").to_pylist()))
            bad = batch.filter(pa.array(chosen & (~usable | again))).to_pylist()
            if bad:
                for row in bad:
                    if not row["reason"]:
                        row["reason"], row["detail"] = "duplicate_id", f"row {row['id']}: an earlier row has its id"
                    row["split"] = split
                rejects.write_table(pa.Table.from_pylist(bad, CORPUS_REJECTS))
                reasons.update(row["reason"] for row in bad)
                first_rejects += bad[: WARNED_REJECTS - len(first_rejects)]
            start = end
    return np.concatenate(keys) if keys else np.zeros(0, np.int64), reasons, first_rejects


def input_keys(questions: list[str]) -> np.ndarray:
    """The inputs' keys (:func:`question_key`), 8 bytes each."""
    return np.fromiter(map(question_key, questions), np.int64, count=len(questions))


def _found_in(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """A mask over ``keys``: which of them ``sorted_keys`` holds."""
    if not sorted_keys.size:
        return np.zeros(keys.size, dtype=bool)
    at = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
    return sorted_keys[at] == keys


def _write_seen_in_train(keys: dict[str, np.ndarray], written: dict[str, Path], target: Path) -> dict[str, int]:
    """The held-out rows of the ``written`` split files whose input key a train row has too, into ``target``
    (a row group of ids at a time); their count per split. Train's keys are sorted in place and searched: no
    copy of them."""
    keys["train"].sort()
    seen = {}
    with pq.ParquetWriter(target, SEEN_IN_TRAIN) as writer:
        for split in ("val", "test"):
            found, start = _found_in(keys["train"], keys[split]), 0
            for batch in pq.ParquetFile(written[split]).iter_batches(batch_size=ROW_GROUP_ROWS, columns=["id"]):
                ids = batch["id"].filter(pa.array(found[start : start + batch.num_rows]))
                writer.write_table(pa.table({"split": [split] * len(ids), "id": ids}, SEEN_IN_TRAIN))
                start += batch.num_rows
            seen[split] = int(found.sum())
    return seen


def seen_test_ids(run: RunDir) -> set[str]:
    """The ids of the corpus's test rows whose input a train row has too (the corpus stage wrote them)."""
    file = run.seen_in_train_file
    table = pq.read_table(file.path, filesystem=file.fs, filters=[("split", "=", "test")], columns=["id"])
    return set(table["id"].to_pylist())


def _rows(file) -> int:
    return pq.read_metadata(file.path, filesystem=file.fs).num_rows


def write_corpus(config: TaskConfig, run: RunDir, ray: RayConfig) -> dict[str, int]:
    """Write the three splits, the rejects and the held-out rows train repeats, all or nothing (skipped when they
    exist); returns rows per split.
    Data files are read and checked on the Ray cluster ``ray`` names (started if need be)."""
    if committed(run.corpus):
        logger.info("corpus exists in %s; reusing it", run.corpus)
        return {split: _rows(run.corpus_file(split)) for split in SPLITS}
    sources = get_task(config.name).load_splits(config)
    keys, written, reasons, first_rejects = {}, {}, Counter(), []
    with scratch_folder(run.corpus) as scratch, written_whole(run.corpus) as folder:  # all five files, or none
        limits = _limits(config)
        carved = "val" not in sources  # train's whole source is shuffled before validation is taken from it
        staged = {
            split: _stage(
                _checked(rows, ray),
                scratch / f"{split}.parquet",
                None if carved and split == "train" else limits[split],
            )
            for split, rows in sources.items()
        }
        chosen = choose(staged, config)
        repeated = duplicates(chosen)
        with pq.ParquetWriter(folder / "rejects.parquet", CORPUS_REJECTS) as rejects:
            for split, (source, keep) in chosen.items():
                written[split] = folder / run.corpus_file(split).name
                keys[split], split_reasons, split_first = _write_split(
                    split, source, keep, repeated[split], written[split], rejects
                )
                reasons += split_reasons
                first_rejects += split_first[: WARNED_REJECTS - len(first_rejects)]
        repeats = _write_seen_in_train(keys, written, folder / run.seen_in_train_file.name)
    counts = {split: int(keys[split].size) for split in SPLITS}
    logger.info("corpus | train %d | val %d | test %d | rejected %d", *counts.values(), sum(reasons.values()))
    for reject in first_rejects:
        logger.warning("corpus | rejected %s: %s", reject["reason"], reject["detail"])
    for split, repeated_inputs in repeats.items():
        if repeated_inputs:
            logger.warning(
                "corpus | %d of %d %s rows have an input a train row has too (case and spacing aside): a student "
                "may have learnt their answers; the report says so",
                repeated_inputs,
                counts[split],
                split,
            )
    run.update_summary("corpus", {**counts, "rejected": dict(reasons), "inputs_seen_in_train": repeats})
    return counts


def held_out_accuracy(answers: Location, correct: str, seen: set[str]) -> float | None:
    """The share of test rows outside ``seen`` (ids) that a file of per-row answers has ``correct``; None when
    the file or such rows are missing."""
    if not answers.is_file():
        return None
    table = pq.read_table(answers.path, filesystem=answers.fs, columns=["split", "id", correct]).to_pylist()
    held_out = [row[correct] for row in table if row["split"] == "test" and row["id"] not in seen]
    return sum(held_out) / len(held_out) if held_out else None
