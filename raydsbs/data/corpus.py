"""The corpus stage: a task's examples, validated, as ``corpus/<split>.parquet``.

Row schema (written down once, here): ``id`` (str, unique), ``question``
(str, the text the teacher and the student read), ``gold`` (str, the task's
ground-truth label). Rows that break it go to ``corpus/rejects.parquet`` with
a reason and a detail naming the row (file and line for unreadable rows), and the
rest of the corpus is still written.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict

import pyarrow as pa
import pyarrow.parquet as pq

from raydsbs.config import TaskConfig
from raydsbs.rundir import RunDir
from raydsbs.schemas import CORPUS, CORPUS_REJECTS
from raydsbs.staging import committed, written_whole
from raydsbs.tasks import SPLITS, Example, RejectedRow, get_task

logger = logging.getLogger(__name__)

ROW_GROUP_ROWS = 8192  # the unit a reader decodes at once: later stages stream the corpus a row group at a time


def row_problem(example: Example, seen: set[str]) -> str | None:
    """Why a corpus row can't be used, or None when it can."""
    for field in ("id", "question", "gold"):
        value = getattr(example, field)
        if not isinstance(value, str):
            return f"{field}_not_text"
        if not value.strip():
            return f"empty_{field}"
    if example.id in seen:
        return "duplicate_id"
    return None


def _rows(file) -> int:
    return pq.read_metadata(file.path, filesystem=file.fs).num_rows


def write_corpus(config: TaskConfig, run: RunDir) -> dict[str, int]:
    """Write the three splits and the rejects, all or nothing (skipped when they exist); returns rows per split."""
    if committed(run.corpus):
        logger.info("corpus exists in %s; reusing it", run.corpus)
        return {split: _rows(run.corpus_file(split)) for split in SPLITS}
    splits = get_task(config.name).load_splits(config)
    seen: set[str] = set()
    rejects, counts = [], {}
    with written_whole(run.corpus) as folder:  # the three splits and the rejects, or none of them
        for split in SPLITS:
            kept = []
            for example in splits[split]:
                if isinstance(example, RejectedRow):
                    rejects.append(
                        {"id": example.id, "split": split, "reason": example.reason, "detail": example.detail}
                    )
                    continue
                problem = row_problem(example, seen)
                if problem:
                    rejects.append(
                        {"id": str(example.id), "split": split, "reason": problem, "detail": f"row {example.id}"}
                    )
                    continue
                seen.add(example.id)
                kept.append(asdict(example))
            pq.write_table(
                pa.Table.from_pylist(kept, CORPUS),
                folder / run.corpus_file(split).name,
                row_group_size=ROW_GROUP_ROWS,
            )
            counts[split] = len(kept)
        pq.write_table(pa.Table.from_pylist(rejects, CORPUS_REJECTS), folder / "rejects.parquet")
    reasons = Counter(reject["reason"] for reject in rejects)
    summary = {**counts, "rejected": dict(reasons)}
    logger.info("corpus | train %d | val %d | test %d | rejected %d", *counts.values(), len(rejects))
    for reject in rejects[:5]:
        logger.warning("corpus | rejected %s: %s", reject["reason"], reject["detail"])
    run.update_summary("corpus", summary)
    return counts
