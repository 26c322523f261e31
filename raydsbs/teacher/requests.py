"""Teacher requests: one row per (input row, sample), built once per run.

    corpus/{train,val,test}.parquet -> teacher/requests/ (request_id, id, split, sample, seed, question, question_key,
    gold, prompt, reason, detail)

The train rows become the distillation set; the validation and test rows
(``teacher.answer_heldout``) are answered only to score the teacher on them.

``request_id`` (``<id>#<sample>``) is the key of row-level resume: the
generation pass checkpoints it. A request that can't be sent (its prompt is
longer than the model's context) carries a ``reason`` and never reaches the
backend; it becomes a rejected row with that reason.

Built on the driver, streaming: the corpus is read ``CHUNK_ROWS`` rows at a
time and each chunk is written as its own file, so memory stays flat at any
corpus size; prompts are plain string joins and the token count uses a fast
tokenizer, a few seconds per hundred thousand rows. (A Ray Data pass for
this step cost more in actor start-up than it saved, measured with
``benchmarks/teacher_throughput.py``.)
"""

from __future__ import annotations

import zlib

import pyarrow as pa
import pyarrow.parquet as pq

from raydsbs.config import Config, TeacherConfig
from raydsbs.rundir import RunDir
from raydsbs.schemas import REQUESTS
from raydsbs.staging import committed, written_whole
from raydsbs.tasks import get_task
from raydsbs.teacher.prompts import build_prompt
from raydsbs.teacher.selection import question_key

CHUNK_ROWS = 8192


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

    def build(self, rows: list[dict], split: str = "train") -> pa.Table:
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
        return pa.Table.from_pylist(requests, schema=REQUESTS)


def write_requests(config: Config, run: RunDir) -> None:
    """Build ``teacher/requests/`` (skipped when it exists; written aside and renamed, so never half there)."""
    if committed(run.requests):
        return
    builder = RequestBuilder(config.task.name, config.teacher)
    with written_whole(run.requests) as staging:
        splits = ("train", "val", "test") if config.teacher.answer_heldout else ("train",)
        for split in splits:
            corpus = pq.ParquetFile(run.corpus_file(split).path, filesystem=run.root.fs)
            for number, batch in enumerate(corpus.iter_batches(batch_size=CHUNK_ROWS)):
                pq.write_table(builder.build(batch.to_pylist(), split), staging / f"{split}-{number:06d}.parquet")
