"""The ``replay`` backend: completions generated before, looked up by row id.

The paper's released files (``task.data_dir``), or a JSONL/Parquet file
(``teacher.replay_file``) of rows such as::

    {"id": "svamp-train-000012", "completion": " Jack had 8 pens. ... So the answer is 5."}
    {"id": "r7", "rationale": "A dog is an animal.", "label": "entailment"}    # "bring your own rationales"

The file is read once per actor into Arrow columns with an index of its ids
(:class:`raydsbs.positions.IdIndex`, 16 bytes a row), never as a dict of
Python rows: a replay file of millions of rows costs about its texts' size.
"""

from __future__ import annotations

import array
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from raydsbs.config import TaskConfig, TeacherConfig
from raydsbs.positions import IdIndex, repeated_ids
from raydsbs.schemas import PASSTHROUGH, REPLAY

CHUNK_ROWS = 8192  # rows of the file turned into Arrow columns at once
NAMED_UNUSABLE = 5  # unusable rows kept with their detail (all are counted)


@dataclass
class ReplayFile:
    """A replay file's usable rows (the first row of each id; "" where a text is absent), and its unusable rows
    counted by reason, the first few with where they are."""

    rows: pa.Table
    unusable: Counter = field(default_factory=Counter)
    first_unusable: list[tuple[str, str]] = field(default_factory=list)

    def reject(self, reason: str, detail: str) -> None:
        self.unusable[reason] += 1
        if len(self.first_unusable) < NAMED_UNUSABLE:
            self.first_unusable.append((reason, detail))


def read_replay_file(path: str, texts: bool = True) -> ReplayFile:
    """``{id, completion}`` or ``{id, rationale, label}`` rows from a JSONL/Parquet file, streamed (``texts``
    False: the rows' ids only, their texts null, to check the file without holding it).

    A row that can't be matched to an input row (unreadable, no id, an id seen before, neither a completion nor
    a rationale and a label) is counted as unusable; the input row it was meant for, if any, becomes
    ``no_replayed_completion``."""
    from raydsbs.storage import location
    from raydsbs.tasks import RejectedRow
    from raydsbs.tasks.sources import read_rows

    name = location(path).name
    kept_columns = REPLAY.names if texts else ["id"]
    replay, chunks, chunk = ReplayFile(REPLAY.empty_table()), [], []
    positions, hashes = array.array("q"), array.array("q")  # of the usable rows: where in the file, their id's hash
    for position, row in enumerate(read_rows(path)):
        where = f"{name} row {position}"
        if isinstance(row, RejectedRow):
            replay.reject(row.reason, row.detail)
        elif row.get("id") is None or not str(row["id"]).strip():
            replay.reject("missing_id", f"{where}: no id")
        elif "completion" in row or ("rationale" in row and "label" in row):
            chunk.append({column: str(row.get(column, "")) for column in kept_columns})
            positions.append(position)
            hashes.append(hash(chunk[-1]["id"]))
        else:
            replay.reject("no_completion", f"{where}: neither completion nor rationale and label")
        if len(chunk) == CHUNK_ROWS:
            chunks.append(pa.Table.from_pylist(chunk, REPLAY))
            chunk = []
    chunks.append(pa.Table.from_pylist(chunk, REPLAY))
    rows = pa.concat_tables(chunks)
    again = repeated_ids(np.frombuffer(hashes, dtype=np.int64), lambda at: rows["id"].take(at).combine_chunks())
    positions = np.frombuffer(positions, dtype=np.int64)
    for row_id, position in zip(rows["id"].filter(again).to_pylist(), positions[again].tolist(), strict=True):
        replay.reject("duplicate_id", f"{name} row {position}: id {row_id!r} again (the first is used)")
    replay.rows = rows.filter(pa.array(~again)) if again.any() else rows
    if not replay.rows.num_rows:
        raise ValueError(f"{path}: no rows with id and completion, or id, rationale and label")
    return replay


class ReplayLookup:
    """Holds the replayed outputs once per actor and fills them in by row id."""

    def __init__(self, config: TeacherConfig, task_config: TaskConfig):
        if config.replay_file:
            self.outputs = read_replay_file(config.replay_file).rows
        else:
            from raydsbs.data.released import completions_by_id

            released = completions_by_id(task_config.data_dir, task_config.name)  # thousands of rows
            blank = [""] * len(released)
            self.outputs = pa.table([list(released), list(released.values()), blank, blank], schema=REPLAY)
        self.index = IdIndex(self.outputs["id"])

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = self.index.find([str(row_id) for row_id in batch["id"]])
        found = rows >= 0
        picked = self.outputs.take(np.where(found, rows, 0))
        out = {column: batch[column] for column in PASSTHROUGH}
        for column, name in (("completion", "completion"), ("given_rationale", "rationale"), ("given_label", "label")):
            texts = np.asarray(picked[name].to_pylist(), dtype=object)
            texts[~found] = ""
            out[column] = texts
        out["generated_tokens"] = np.zeros(len(rows), dtype=np.int64)
        out["error"] = np.where(found, "", "no replayed completion has this id").astype(object)
        return out


def replay_backend(ds, config: TeacherConfig, task_config: TaskConfig):
    return ds.map_batches(
        ReplayLookup,
        fn_constructor_kwargs={"config": config, "task_config": task_config},
        concurrency=1,
        num_cpus=0.25,
        batch_format="numpy",
    )
