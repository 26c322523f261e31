"""The teacher stage, streamed by Ray Data::

    corpus/train.parquet -> few-shot prompt -> backend (vLLM | replay) -> parse
        -> teacher/generations/ -> teacher/distill.parquet + teacher/rejects.parquet

Row schema of ``distill.parquet``: id, question, gold, rationale,
teacher_label, teacher_correct. Of ``rejects.parquet``: id, reason,
completion. Counts of every reason go into the run summary.
"""

from __future__ import annotations

import logging
import time
import uuid

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from raydsbs.config import Config
from raydsbs.ray_session import start_ray
from raydsbs.rundir import RunDir
from raydsbs.tasks import get_task
from raydsbs.teacher.backends import BACKENDS
from raydsbs.teacher.prompts import build_prompt

logger = logging.getLogger(__name__)

DISTILL_COLUMNS = ["id", "question", "gold", "rationale", "teacher_label", "teacher_correct"]
REJECT_COLUMNS = ["id", "reason", "completion"]


def add_prompts(batch: dict[str, np.ndarray], task_name: str, num_shots: int) -> dict[str, np.ndarray]:
    task = get_task(task_name)
    batch["prompt"] = np.array([build_prompt(task, q, num_shots) for q in batch["question"]], dtype=object)
    return batch


def parse_completions(batch: dict[str, np.ndarray], task_name: str) -> dict[str, np.ndarray]:
    """Adds rationale, teacher_label, teacher_correct and reason ("" when the row is kept)."""
    task = get_task(task_name)
    rationales, labels, correct, reasons = [], [], [], []
    for completion, gold, error in zip(batch["completion"], batch["gold"], batch["error"]):
        parsed = task.parse_completion(completion)
        rationales.append(parsed.rationale)
        labels.append(parsed.label or "")
        correct.append(task.answers_match(parsed.label, gold))
        reasons.append("inference_error" if error else (parsed.reason or ""))
    batch.update(
        rationale=np.array(rationales, dtype=object),
        teacher_label=np.array(labels, dtype=object),
        teacher_correct=np.array(correct, dtype=bool),
        reason=np.array(reasons, dtype=object),
    )
    return batch


def _split_generations(run: RunDir) -> dict:
    """Kept rows -> distill.parquet, the rest -> rejects.parquet; returns the counts."""
    table = pads.dataset(run.generations, format="parquet").to_table()
    kept = pc.equal(table["reason"], "")
    pq.write_table(table.filter(kept).select(DISTILL_COLUMNS).sort_by("id"), run.distill_file)
    rejected = table.filter(pc.invert(kept))
    pq.write_table(rejected.select(REJECT_COLUMNS).sort_by("id"), run.rejects_file)
    reasons = rejected.group_by("reason").aggregate([("id", "count")]).to_pylist()
    return {
        "rows": table.num_rows,
        "kept": table.num_rows - rejected.num_rows,
        "rejected": {row["reason"]: row["id_count"] for row in reasons},
        "teacher_accuracy_train": round(pc.mean(table["teacher_correct"].cast("int8")).as_py() or 0.0, 4),
        "generated_tokens": pc.sum(table["generated_tokens"]).as_py() or 0,
    }


def _run_teacher(config: Config, run: RunDir) -> float:
    """Stream the train split through prompts, the backend and the parser into teacher/generations/.

    Written aside and renamed when complete, so a run killed mid-write leaves no
    half set that a rerun would append to. Returns the wall time in seconds.
    """
    import ray

    start_ray(config.ray)
    started = time.perf_counter()
    ds = ray.data.read_parquet(str(run.corpus_file("train")))
    ds = ds.map_batches(add_prompts, fn_kwargs={"task_name": config.task.name, "num_shots": config.teacher.num_shots},
                        batch_format="numpy", num_cpus=0.25)
    ds = BACKENDS[config.teacher.backend](ds, config.teacher, config.task)
    ds = ds.map_batches(parse_completions, fn_kwargs={"task_name": config.task.name},
                        batch_format="numpy", num_cpus=0.25)
    staging = run.teacher / f"generations.partial-{uuid.uuid4().hex[:8]}"
    ds.write_parquet(str(staging))
    staging.rename(run.generations)
    return time.perf_counter() - started


def generate(config: Config, run: RunDir) -> dict:
    """Run the teacher over the train split (skipped when its outputs exist); returns the summary."""
    if run.distill_file.is_file() and run.rejects_file.is_file():
        logger.info("teacher outputs exist in %s; skipping generation", run.teacher)
        return run.read_summary().get("teacher", {})
    seconds = _run_teacher(config, run) if not run.generations.is_dir() else None
    summary = _split_generations(run)
    if seconds is not None:
        summary.update(seconds=round(seconds, 1), generated_tokens_per_s=round(summary["generated_tokens"] / seconds, 1))
    logger.info("teacher | rows %d | kept %d | rejected %s | teacher acc %.3f | %s tok/s", summary["rows"],
                summary["kept"], summary["rejected"], summary["teacher_accuracy_train"],
                summary.get("generated_tokens_per_s", "?"))
    run.update_summary("teacher", summary)
    return summary
