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
import torch

from raydsbs.config import Config
from raydsbs.rundir import RunDir
from raydsbs.student.batching import LABEL_PREFIX
from raydsbs.student.launcher import canonical
from raydsbs.student.tokenizer import load_tokenizer
from raydsbs.student.train_loop import MODEL_SUBDIR
from raydsbs.tasks import get_task

logger = logging.getLogger(__name__)

EVAL_SPLITS = ("val", "test")


def predict(model, tokenizer, questions: list[str], config: Config) -> list[str]:
    """The decoded label-task outputs for ``questions``, in order."""
    outputs = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(questions), config.eval.batch_size):
            chunk = [LABEL_PREFIX + q for q in questions[start : start + config.eval.batch_size]]
            encoded = tokenizer(chunk, return_tensors="pt", padding=True, truncation=True,
                                max_length=config.student.max_input_tokens)
            generated = model.generate(**encoded, max_new_tokens=config.eval.max_new_tokens, do_sample=False)
            outputs += tokenizer.batch_decode(generated, skip_special_tokens=True)
    return [text.strip() for text in outputs]


def evaluate_student(config: Config, run: RunDir, folder: Path) -> dict:
    """Accuracy on val and test of the model in ``folder``; writes metrics.json and predictions.parquet."""
    metrics_file = folder / "metrics.json"
    if metrics_file.is_file():
        return json.loads(metrics_file.read_text())
    from transformers import AutoModelForSeq2SeqLM

    config = canonical(config)
    task = get_task(config.task.name)
    tokenizer = load_tokenizer(config.student, run.tokenizer)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder / MODEL_SUBDIR)
    metrics: dict = {"training": folder.name, "method": config.train.method,
                     "train_fraction": config.train.train_fraction,
                     "rationale_weight": config.train.rationale_weight, "seed": config.train.seed}
    rows = []
    for split in EVAL_SPLITS:
        examples = pq.read_table(run.corpus_file(split)).to_pylist()
        outputs = predict(model, tokenizer, [e["question"] for e in examples], config)
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
