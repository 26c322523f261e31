"""The corpus's row rules, the staged layout every source's checked rows take, and an input's key (the same
text, case and spacing aside: the corpus counts the held-out inputs that train repeats, the teacher stage drops
repeated train inputs).

A staged row is the corpus row (``id``, ``question``, ``gold``) with ``reason`` ("" when usable) and
``detail`` naming the row and the problem. Rows read here (generated problems, the paper's released files, a hub
split) are checked in the corpus stage's process; data files are checked in a Ray Data map stage
(:mod:`raydsbs.data.file_reads`); both through :func:`checked_table`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import pyarrow as pa

from raydsbs.schemas import CORPUS
from raydsbs.tasks import Example, RejectedRow

STAGED = pa.schema([*CORPUS, ("reason", pa.string()), ("detail", pa.string())])  # reason "": a usable row
TABLE_ROWS = 8192  # rows checked and handed on at once


def row_problem(example: Example) -> str | None:
    """Why a corpus row can't be used (a duplicate id aside), or None when it can."""
    for field in ("id", "question", "gold"):
        value = getattr(example, field)
        if not isinstance(value, str):
            return f"{field}_not_text"
        if not value.strip():
            return f"empty_{field}"
    return None


def question_key(question: str) -> int:
    """A 64-bit hash of the input, lower-cased and with whitespace collapsed; the same in every process
    (Python's ``hash`` of a string is salted per process, and the keys are made in several)."""
    normalized = " ".join(question.lower().split()).encode()
    return int.from_bytes(hashlib.blake2b(normalized, digest_size=8).digest(), "big", signed=True)


def checked_table(rows: Iterable[Example | RejectedRow]) -> pa.Table:
    """Rows of a task as one staged table: a RejectedRow keeps its reason, an Example that breaks the row rules
    gets one."""
    records = []
    for row in rows:
        if isinstance(row, RejectedRow):
            reason, detail, texts = row.reason, row.detail, ("", "")
        else:
            reason = row_problem(row) or ""
            detail, texts = (f"row {row.id}" if reason else ""), (row.question, row.gold)
        text = [value if isinstance(value, str) else str(value) for value in (row.id, *texts)]
        records.append(dict(zip(STAGED.names, [*text, reason, detail], strict=True)))
    return pa.Table.from_pylist(records, STAGED)
