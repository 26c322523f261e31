"""Teacher requests: one row per (input row, sample), built once per run with Ray Data.

    corpus/train.parquet -> requests/  (request_id, id, sample, seed, question, gold, prompt, reason, detail)

``request_id`` (``<id>#<sample>``) is the key of row-level resume: the
generation pass checkpoints it. A request that can't be sent (its prompt is
longer than the model's context) carries a ``reason`` and never reaches the
backend; it becomes a rejected row with that reason.
"""

from __future__ import annotations

import uuid
import zlib

import numpy as np

from raydsbs.config import Config, TeacherConfig
from raydsbs.rundir import RunDir
from raydsbs.tasks import get_task
from raydsbs.teacher.prompts import build_prompt

REQUEST_COLUMNS = ["request_id", "id", "sample", "seed", "question", "gold", "prompt", "reason", "detail"]


def request_id(row_id: str, sample: int) -> str:
    return f"{row_id}#{sample}"


def sample_seed(base_seed: int, row_id: str, sample: int) -> int:
    """A seed per (row, sample) that stays the same across reruns and machines."""
    return zlib.crc32(f"{base_seed}:{row_id}:{sample}".encode()) & 0x7FFFFFFF


class RequestBuilder:
    """Expands rows into samples, builds prompts, and flags prompts too long for the model's context."""

    def __init__(self, task_name: str, teacher: TeacherConfig):
        self.task = get_task(task_name)
        self.teacher = teacher
        self.tokenizer = None
        if teacher.backend == "vllm":  # the engine's own tokenizer counts the prompt as the engine will
            from transformers import AutoTokenizer

            from raydsbs.teacher.model_cache import resolve_model

            self.tokenizer = AutoTokenizer.from_pretrained(resolve_model(teacher.model))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        samples = self.teacher.samples
        prompts = [build_prompt(self.task, question, self.teacher.num_shots) for question in batch["question"]]
        reasons, details = [""] * len(prompts), [""] * len(prompts)
        if self.tokenizer is not None:
            limit = self.teacher.max_model_len - self.teacher.max_new_tokens
            for i, ids in enumerate(self.tokenizer(prompts)["input_ids"]):
                if len(ids) > limit:
                    reasons[i] = "prompt_too_long"
                    details[i] = (f"prompt of {len(ids)} tokens + {self.teacher.max_new_tokens} new tokens exceeds "
                                  f"teacher.max_model_len={self.teacher.max_model_len}")
        repeat = lambda values: np.repeat(np.asarray(values, dtype=object), samples)  # noqa: E731
        ids = repeat(batch["id"])
        sample = np.tile(np.arange(samples, dtype=np.int64), len(batch["id"]))
        return {
            "request_id": np.array([request_id(i, s) for i, s in zip(ids, sample)], dtype=object),
            "id": ids,
            "sample": sample,
            "seed": np.array([sample_seed(self.teacher.seed, i, s) for i, s in zip(ids, sample)], dtype=np.int64),
            "question": repeat(batch["question"]),
            "gold": repeat(batch["gold"]),
            "prompt": repeat(prompts),
            "reason": repeat(reasons),
            "detail": repeat(details),
        }


def write_requests(config: Config, run: RunDir) -> None:
    """Build ``teacher/requests/`` (skipped when it exists; written aside and renamed, so never half there)."""
    import ray

    if run.requests.is_dir():
        return
    ds = ray.data.read_parquet(str(run.corpus_file("train")))
    ds = ds.map_batches(RequestBuilder, fn_constructor_kwargs={"task_name": config.task.name, "teacher": config.teacher},
                        batch_format="numpy", concurrency=1, num_cpus=0.5)
    staging = run.teacher / f"requests.partial-{uuid.uuid4().hex[:8]}"
    ds.write_parquet(str(staging))
    staging.rename(run.requests)
