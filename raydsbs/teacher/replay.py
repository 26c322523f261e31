"""The ``replay`` backend: completions generated before, joined to the requests by row id.

The paper's released files (``task.data_dir``), or a JSONL/Parquet file
(``teacher.replay_file``) of rows such as::

    {"id": "svamp-train-000012", "completion": " Jack had 8 pens. ... So the answer is 5."}
    {"id": "r7", "rationale": "A dog is an animal.", "label": "entailment"}    # "bring your own rationales"

The file is read once, streamed, while the requests are built
(``teacher/requests.py``): its usable rows are spread over one scratch file
per range of ``RANGE_ROWS`` corpus rows (each one's row found by a hash join
in buckets: :func:`raydsbs.spread.spread_by_position`), and each chunk of
requests takes its replayed texts from its range's file. The requests then
carry them (``replay_*`` columns) and the backend only copies them into the
stream: whatever the file's size, no process holds it whole.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raydsbs.config import TaskConfig, TeacherConfig
from raydsbs.schemas import PASSTHROUGH, REPLAY, REPLAYED
from raydsbs.spread import POSITION, spread_by_position

CHUNK_ROWS = 8192  # rows of the file turned into Arrow columns at once
RANGE_ROWS = 65536  # consecutive corpus rows whose replayed rows are held at once
NAMED_UNUSABLE = 5  # unusable rows kept with their detail (all are counted)
UNUSABLE_FILE = "_replay_unusable.json"  # in teacher/requests/, so a resumed run still reports them

# A replay row as the scratch files of a range hold it: where it is in the file and which corpus row it answers.
_SCRATCH = pa.schema([*REPLAY, ("row", pa.int64()), (POSITION, pa.int64())])


@dataclass
class Unusable:
    """A replay file's rows that can't be used, counted by reason, the first few with where they are."""

    counts: Counter = field(default_factory=Counter)
    first: list[tuple[str, str]] = field(default_factory=list)

    def reject(self, reason: str, detail: str) -> None:
        self.counts[reason] += 1
        if len(self.first) < NAMED_UNUSABLE:
            self.first.append((reason, detail))

    def write(self, path: Path) -> None:
        path.write_text(json.dumps({"counts": dict(self.counts), "first": self.first}))

    @classmethod
    def read(cls, data: str) -> Unusable:
        loaded = json.loads(data)
        return cls(Counter(loaded["counts"]), [tuple(item) for item in loaded["first"]])


def replay_rows(path: str, unusable: Unusable) -> Iterator[pa.Table]:
    """The rows of a JSONL/Parquet replay file with an id and a completion (or a rationale and a label), in file
    order, ``CHUNK_ROWS`` at a time, with their row number in the file (``row``); "" where a text is absent. A
    row that can't be matched to an input row (unreadable, no id, neither a completion nor a rationale and a
    label) is counted in ``unusable``; the input row it was meant for, if any, becomes
    ``no_replayed_completion``. A file without one usable row is an error, once it has been read."""
    from raydsbs.storage import location
    from raydsbs.tasks import RejectedRow
    from raydsbs.tasks.sources import read_rows

    name, chunk, rows, usable = location(path).name, [], [], 0
    for position, row in enumerate(read_rows(path)):
        where = f"{name} row {position}"
        if isinstance(row, RejectedRow):
            unusable.reject(row.reason, row.detail)
        elif row.get("id") is None or not str(row["id"]).strip():
            unusable.reject("missing_id", f"{where}: no id")
        elif "completion" in row or ("rationale" in row and "label" in row):
            chunk.append({column: str(row.get(column, "")) for column in REPLAY.names})
            rows.append(position)
            usable += 1
        else:
            unusable.reject("no_completion", f"{where}: neither completion nor rationale and label")
        if len(chunk) == CHUNK_ROWS:
            yield pa.Table.from_pylist(chunk, REPLAY).append_column("row", pa.array(rows, pa.int64()))
            chunk, rows = [], []
    if chunk:
        yield pa.Table.from_pylist(chunk, REPLAY).append_column("row", pa.array(rows, pa.int64()))
    if not usable:
        raise ValueError(f"{path}: no rows with id and completion, or id, rationale and label")


def _released_rows(task_config: TaskConfig) -> Iterator[pa.Table]:
    from raydsbs.data.released import completions_by_id

    released = completions_by_id(task_config.data_dir, task_config.name)  # thousands of rows
    blank = [""] * len(released)
    table = pa.table([list(released), list(released.values()), blank, blank], schema=REPLAY)
    yield table.append_column("row", pa.array(np.arange(len(released), dtype=np.int64)))


class ReplayedTexts:
    """The replayed texts of the corpus's rows, by their position (the rows of the splits one after another, as
    the requests are built), from scratch files of ``RANGE_ROWS`` positions each."""

    def __init__(
        self,
        teacher: TeacherConfig,
        task_config: TaskConfig,
        corpus_ids: Iterable[pa.Array],
        corpus_rows: int,
        scratch: Path,
    ):
        from raydsbs.storage import location

        self.source = teacher.replay_file or f"the released files in {task_config.data_dir}"
        self.name = location(teacher.replay_file).name if teacher.replay_file else "released"
        self.unusable, self.used = Unusable(), 0
        self.paths = [scratch / f"replay-{n:06d}.parquet" for n in range(max(1, -(-corpus_rows // RANGE_ROWS)))]
        tables = replay_rows(teacher.replay_file, self.unusable) if teacher.replay_file else _released_rows(task_config)
        self.elsewhere = spread_by_position(tables, corpus_ids, self.paths, RANGE_ROWS, _SCRATCH).count
        self.held = (-1, _SCRATCH.empty_table())  # the range read last: the positions are asked in order

    def _range(self, number: int) -> pa.Table:
        """One range's rows, the first in the file of each id (its later rows counted as duplicates)."""
        if self.held[0] != number:
            table = pq.read_table(self.paths[number]).sort_by([(POSITION, "ascending"), ("row", "ascending")])
            _, first = np.unique(table[POSITION].to_numpy(), return_index=True)
            again = np.ones(table.num_rows, dtype=bool)
            again[first] = False
            repeated = table.filter(pa.array(again)).sort_by("row")
            for row_id, row in zip(repeated["id"].to_pylist(), repeated["row"].to_pylist(), strict=True):
                self.unusable.reject("duplicate_id", f"{self.name} row {row}: id {row_id!r} again (the first is used)")
            self.held = (number, table.take(first))
            self.used += len(first)
        return self.held[1]

    def texts(self, start: int, count: int) -> pa.Table:
        """What the file holds for the ``count`` corpus rows from position ``start`` (schema ``REPLAYED``)."""
        parts = []
        for number in range(start // RANGE_ROWS, (start + count - 1) // RANGE_ROWS + 1):
            table = self._range(number)
            positions = table[POSITION].to_numpy()
            parts.append(table.filter(pa.array((positions >= start) & (positions < start + count))))
        found = pa.concat_tables(parts)
        row_of = np.full(count, -1, dtype=np.int64)  # each corpus row's replayed row in ``found``, if any
        row_of[found[POSITION].to_numpy() - start] = np.arange(found.num_rows)
        picked = found.take(pa.array(row_of, mask=row_of < 0))
        texts = [pc.fill_null(picked[name], "") for name in ("completion", "rationale", "label")]
        return pa.Table.from_arrays([*texts, pa.array(row_of >= 0)], schema=REPLAYED)


def not_replayed(count: int) -> pa.Table:
    """``REPLAYED`` columns of ``count`` rows the replay file holds nothing for (every backend but replay)."""
    blank = pa.array([""] * count, pa.string())
    return pa.Table.from_arrays([blank, blank, blank, pa.array(np.zeros(count, dtype=bool))], schema=REPLAYED)


def replayed(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A batch of requests with the completions (or rationales and labels) they carry from the replay file."""
    out = {column: batch[column] for column in PASSTHROUGH}
    out["completion"] = batch["replay_completion"]
    out["given_rationale"], out["given_label"] = batch["replay_rationale"], batch["replay_label"]
    out["generated_tokens"] = out["prompt_tokens"] = np.zeros(len(batch["id"]), dtype=np.int64)
    out["error"] = np.where(batch["replayed"], "", "no replayed completion has this id").astype(object)
    return out


def replay_backend(ds, config: TeacherConfig, task_config: TaskConfig):
    return ds.map_batches(replayed, num_cpus=0.25, batch_format="numpy")
