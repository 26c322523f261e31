"""Teacher requests: one row per (input row, sample), built once per run.

    corpus/{train,val,test}.parquet -> teacher/requests/ (request_id, id, split, sample, seed, question, question_key,
    gold, prompt, reason, detail; replay_completion, replay_rationale, replay_label, replayed)

The train rows become the distillation set; the validation and test rows
(``teacher.answer_heldout``) are answered only to score the teacher on them.

``request_id`` (``<id>#<sample>``) is the key of row-level resume: the
generation pass checkpoints it. A request that can't be sent (its prompt is
longer than the model's context) carries a ``reason`` and never reaches the
backend; it becomes a rejected row with that reason. With the replay
backend each request also carries what the replay file holds for its row
(joined here a range of corpus rows at a time: ``teacher/replay.py``).

Built on the driver, streaming: the corpus is read ``CHUNK_ROWS`` rows at a
time and each chunk is written as its own file, so memory stays flat at any
corpus size; prompts are plain string joins and the token count uses a fast
tokenizer, a few seconds per hundred thousand rows. (A Ray Data pass for
this step cost more in actor start-up than it saved, measured with
``benchmarks/teacher_throughput.py``.)
"""

from __future__ import annotations

import logging
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raydsbs.config import Config, TeacherConfig
from raydsbs.data.checks import question_key
from raydsbs.rundir import RunDir
from raydsbs.schemas import REPLAYED, REQUESTS
from raydsbs.staging import committed, scratch_folder, written_whole
from raydsbs.tasks import get_task
from raydsbs.teacher.prompts import build_prompt
from raydsbs.teacher.replay import UNUSABLE_FILE, ReplayedTexts, Unusable, not_replayed

logger = logging.getLogger(__name__)

CHUNK_ROWS = 8192
_BUILT = pa.schema(list(REQUESTS)[: -len(REPLAYED)])  # the columns made here; the replayed ones follow


def request_id(row_id: str, sample: int) -> str:
    return f"{row_id}#{sample}"


def sample_seed(base_seed: int, row_id: str, sample: int) -> int:
    """A seed per (row, sample) that stays the same across reruns and machines."""
    return zlib.crc32(f"{base_seed}:{row_id}:{sample}".encode()) & 0x7FFFFFFF


def _engine_tokenizer(teacher: TeacherConfig):
    """The teacher's own (fast) tokenizer, to count prompt tokens as the engine will.

    Loaded with the ``tokenizers`` library from ``tokenizer.json``: a second,
    not the several seconds importing transformers costs the driver.
    """
    from pathlib import Path

    from tokenizers import Tokenizer

    from raydsbs.teacher.model_cache import resolve_model

    source = resolve_model(teacher.model)
    local = Path(source) / "tokenizer.json"
    return Tokenizer.from_file(str(local)) if local.is_file() else Tokenizer.from_pretrained(source)


class RequestBuilder:
    """Expands rows into samples, builds prompts, and flags prompts too long for the model's context."""

    def __init__(self, task_name: str, teacher: TeacherConfig):
        self.task = get_task(task_name)
        self.teacher = teacher
        self.tokenizer = _engine_tokenizer(teacher) if teacher.backend == "vllm" else None

    def _too_long(self, prompts: list[str]) -> list[str]:
        """A detail for each prompt that can't fit in the context with its new tokens, else ""."""
        if self.tokenizer is None:
            return [""] * len(prompts)
        limit = self.teacher.max_model_len - self.teacher.max_new_tokens
        lengths = [len(encoding.ids) for encoding in self.tokenizer.encode_batch(prompts)]
        return [
            f"prompt of {n} tokens + {self.teacher.max_new_tokens} new tokens exceeds "
            f"teacher.max_model_len={self.teacher.max_model_len}"
            if n > limit
            else ""
            for n in lengths
        ]

    def build(self, rows: list[dict], split: str = "train", replayed: pa.Table | None = None) -> pa.Table:
        """The requests of ``rows``, each row's samples together; ``replayed``: what the replay file holds for each
        row (:meth:`ReplayedTexts.texts`), carried by each of its samples."""
        prompts = [build_prompt(self.task, row["question"], self.teacher.num_shots) for row in rows]
        too_long = self._too_long(prompts)
        keys = [question_key(row["question"]) for row in rows]  # made here, so the selection never reads the inputs
        requests = [
            {
                "request_id": request_id(row["id"], sample),
                "id": row["id"],
                "split": split,
                "sample": sample,
                "seed": sample_seed(self.teacher.seed, row["id"], sample),
                "question": row["question"],
                "question_key": key,
                "gold": row["gold"],
                "prompt": prompt,
                "reason": "prompt_too_long" if detail else "",
                "detail": detail,
            }
            for row, prompt, detail, key in zip(rows, prompts, too_long, keys, strict=True)
            for sample in range(self.teacher.samples)
        ]
        table = pa.Table.from_pylist(requests, schema=_BUILT)
        if replayed is None:
            replayed = not_replayed(len(rows))
        each = replayed.take(np.repeat(np.arange(len(rows)), self.teacher.samples))
        return pa.Table.from_arrays([*table.columns, *each.columns], schema=REQUESTS)


def write_requests(config: Config, run: RunDir) -> None:
    """Build ``teacher/requests/`` (skipped when it exists; written aside and renamed, so never half there). With
    the replay backend the replay file is read here, a range of corpus rows at a time, and its unusable rows are
    counted in the folder (``replay.UNUSABLE_FILE``)."""
    if committed(run.requests):
        _check_columns(run)
        return
    builder = RequestBuilder(config.task.name, config.teacher)
    splits = ("train", "val", "test") if config.teacher.answer_heldout else ("train",)
    corpus = {split: pq.ParquetFile(run.corpus_file(split).path, filesystem=run.root.fs) for split in splits}
    with written_whole(run.requests) as staging, scratch_folder(run.requests) as scratch:
        replay = None
        if config.teacher.backend == "replay":
            ids = (batch["id"] for file in corpus.values() for batch in file.iter_batches(columns=["id"]))
            rows = sum(file.metadata.num_rows for file in corpus.values())
            replay = ReplayedTexts(config.teacher, config.task, ids, rows, scratch)
        position = 0  # of the row in the splits one after another
        for split, file in corpus.items():
            for number, batch in enumerate(file.iter_batches(batch_size=CHUNK_ROWS)):
                texts = replay.texts(position, batch.num_rows) if replay else None
                requests = builder.build(batch.to_pylist(), split, texts)
                pq.write_table(requests, staging / f"{split}-{number:06d}.parquet")
                position += batch.num_rows
        if replay:
            _report_replay(replay)
            replay.unusable.write(staging / UNUSABLE_FILE)


def _check_columns(run: RunDir) -> None:
    """Refuse requests an earlier raydsbs built in another layout (the stream would fail on them midway)."""
    first = min(run.requests.glob("*.parquet"), key=str, default=None)
    if first is None:  # a corpus without rows: nothing to stream
        return
    missing = [name for name in REQUESTS.names if name not in pq.read_schema(first.path, filesystem=first.fs).names]
    if missing:
        raise ValueError(
            f"{run.requests} was built by an earlier raydsbs (no {', '.join(missing)} columns) and its generation "
            f"is not finished: remove {run.requests} to build it again (the rows generated so far are kept)"
        )


def _report_replay(replay: ReplayedTexts) -> None:
    for reason, detail in replay.unusable.first:
        logger.warning("teacher | replay file row unusable (%s): %s", reason, detail)
    if replay.unusable.counts:
        logger.warning(
            "teacher | %d rows of %s unusable: %s",
            replay.unusable.counts.total(),
            replay.source,
            dict(replay.unusable.counts),
        )
    logger.info(
        "teacher | %d corpus rows replayed from %s (%d of its rows are for inputs this run does not have)",
        replay.used,
        replay.source,
        replay.elsewhere,
    )


def replay_unusable(run: RunDir) -> dict[str, int]:
    """The replay file's unusable rows counted by reason, as the requests were built ({} for other backends)."""
    counts = run.requests / UNUSABLE_FILE
    return dict(Unusable.read(counts.read_text()).counts) if counts.is_file() else {}
