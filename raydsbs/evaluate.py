"""Evaluation: greedy label predictions of a trained student, scored by the task's own comparison.

Validation accuracy is what a user may select on; test accuracy is reported
once per trained model and never used to choose anything.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from raydsbs.config import Config
from raydsbs.rundir import RunDir
from raydsbs.student.inference import generate
from raydsbs.student.launcher import canonical
from raydsbs.student.learner import MODEL_SUBDIR
from raydsbs.student.model import load_student
from raydsbs.tasks import get_task

logger = logging.getLogger(__name__)

EVAL_SPLITS = ("val", "test")


def evaluate_student(config: Config, run: RunDir, folder: Path) -> dict:
    """Accuracy on val and test of the model in ``folder``; writes metrics.json and predictions.parquet."""
    metrics_file = folder / "metrics.json"
    if metrics_file.is_file():
        return json.loads(metrics_file.read_text())
    config = canonical(config)
    task = get_task(config.task.name)
    model, tokenizer, fmt = load_student(folder / MODEL_SUBDIR, config.student.trust_remote_code)
    metrics: dict = {"training": folder.name, "method": config.train.method,
                     "train_fraction": config.train.train_fraction,
                     "rationale_weight": config.train.rationale_weight, "seed": config.train.seed,
                     "parameters": model.num_parameters()}
    rows = []
    for split in EVAL_SPLITS:
        examples = pq.read_table(run.corpus_file(split)).to_pylist()
        outputs = generate(model, tokenizer, fmt, [e["question"] for e in examples], "label",
                           config.eval.max_new_tokens, config.eval.batch_size)
        for example, output in zip(examples, outputs):
            label = task.parse_prediction(output)
            rows.append({"split": split, "id": example["id"], "output": output, "label": label or "",
                         "gold": example["gold"], "correct": task.answers_match(label, example["gold"])})
        correct = [row["correct"] for row in rows if row["split"] == split]
        metrics[f"{split}_accuracy"] = round(sum(correct) / max(1, len(correct)), 4)
    pq.write_table(pa.Table.from_pylist(rows), folder / "predictions.parquet")
    metrics_file.write_text(json.dumps(metrics, indent=2))
    logger.info("evaluate | %s | val acc %.3f | test acc %.3f", folder.name, metrics["val_accuracy"],
                metrics["test_accuracy"])
    return metrics
