"""Evaluation: greedy label predictions of a trained student, scored by the task's own comparison, and the
two lines every result is read against: the untrained student and the trivial floor.

Validation accuracy is what a user may select on; test accuracy is reported
once per trained model and never used to choose anything.
"""

from __future__ import annotations

import json
import logging
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq

from raydsbs.config import Config, config_hash
from raydsbs.rundir import RunDir
from raydsbs.staging import written_whole
from raydsbs.storage import Location, local_copy
from raydsbs.student.inference import predict_counted
from raydsbs.student.launcher import prepare_tokenizer, without_ignored_keys
from raydsbs.student.learner import DTYPES, MODEL_SUBDIR, compute_dtype
from raydsbs.tasks import get_task

logger = logging.getLogger(__name__)

EVAL_SPLITS = ("val", "test")


def answer_tokens(config: Config) -> int:
    """Tokens a student may generate for one answer: a label's, or a rationale and a label's (cot_finetune)."""
    if config.train.method == "cot_finetune":
        return config.student.max_rationale_tokens + config.eval.max_new_tokens
    return config.eval.max_new_tokens


def score(config: Config, run: RunDir, model, tokenizer, fmt) -> tuple[dict, list[dict]]:
    """Accuracy on val and test and tokens generated per answer, greedy, in the precision the student trained
    in; and a row per prediction."""
    task = get_task(config.task.name)
    dtype = DTYPES[compute_dtype(config.train)]  # the precision the student trained in
    metrics, rows = {}, []
    for split in EVAL_SPLITS:
        file = run.corpus_file(split)
        examples = pq.read_table(file.path, filesystem=file.fs).to_pylist()
        outputs = predict_counted(
            model,
            tokenizer,
            fmt,
            [e["question"] for e in examples],
            "label",
            answer_tokens(config),
            config.eval.batch_size,
            dtype,
        )
        for example, (output, tokens) in zip(examples, outputs, strict=True):
            label = task.parse_prediction(output, example["question"])
            rows.append(
                {
                    "split": split,
                    "id": example["id"],
                    "output": output,
                    "label": label or "",
                    "gold": example["gold"],
                    "correct": task.answers_match(label, example["gold"]),
                    "generated_tokens": tokens,
                }
            )
        scored = [row for row in rows if row["split"] == split]
        count = max(1, len(scored))
        metrics[f"{split}_accuracy"] = round(sum(r["correct"] for r in scored) / count, 4)
        metrics[f"{split}_tokens_per_answer"] = round(sum(r["generated_tokens"] for r in scored) / count, 1)
    return metrics, rows


def _write(folder: Location, metrics: dict, rows: list[dict]) -> None:
    """The predictions, then the metrics that mark the scoring done; each file whole."""
    with written_whole(folder / "predictions.parquet", folder=False, replace=True) as staging:
        pq.write_table(pa.Table.from_pylist(rows), staging)
    with written_whole(folder / "metrics.json", folder=False, replace=True) as staging:
        staging.write_text(json.dumps(metrics, indent=2))


def evaluate_student(config: Config, run: RunDir, folder: Location) -> dict:
    """Accuracy on val and test of the model in ``folder``; writes metrics.json and predictions.parquet."""
    from raydsbs.student.model import load_student

    metrics_file = folder / "metrics.json"
    scoring = config.eval.model_dump(mode="json")
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text())
        if metrics.get("eval") == scoring:
            logger.info("evaluate | %s | reuses its scores (metrics.json, the same eval.* settings)", folder.name)
            return metrics
        logger.info("evaluate | %s | scores again: eval.* was %s, is %s", folder.name, metrics.get("eval"), scoring)
    config = without_ignored_keys(config)
    model, tokenizer, fmt = load_student(local_copy(folder / MODEL_SUBDIR), config.student.trust_remote_code)
    training_file = folder / "training.json"
    training = json.loads(training_file.read_text()) if training_file.is_file() else {}
    metrics: dict = {
        "training": folder.name,
        "method": config.train.method,
        "train_fraction": config.train.train_fraction,
        "rationale_weight": config.train.rationale_weight,
        "seed": config.train.seed,
        "parameters": model.num_parameters(),
        "examples": training.get("examples"),
        "eval": scoring,
    }
    scores, rows = score(config, run, model, tokenizer, fmt)
    metrics.update(scores)
    _write(folder, metrics, rows)
    logger.info(
        "evaluate | %s | val acc %.3f | test acc %.3f | %.1f tokens per answer",
        folder.name,
        metrics["val_accuracy"],
        metrics["test_accuracy"],
        metrics["test_tokens_per_answer"],
    )
    return metrics


def evaluate_untrained(config: Config, run: RunDir) -> dict:
    """The student as it starts, before any training, asked the label task with the same prompt and parser:
    what a trained student's accuracy is to be read against (written once per student setting)."""
    from raydsbs.student.batching import student_format
    from raydsbs.student.model import build_student, student_kind
    from raydsbs.student.tokenizer import load_tokenizer

    student = config.student.model_copy(update={"lora": None})  # adapters start as the identity
    folder = run.untrained / f"{student.preset}-{config_hash(Config(student=student, eval=config.eval), 6)}"
    if (folder / "metrics.json").is_file():
        return json.loads((folder / "metrics.json").read_text())
    import torch

    prepare_tokenizer(config, run)
    tokenizer = load_tokenizer(student, run.tokenizer)
    torch.manual_seed(config.train.seed)  # the initial weights the trainings start from
    model = build_student(student, tokenizer)
    fmt = student_format(student, student_kind(student))
    label_config = config.model_copy(update={"train": config.train.model_copy(update={"method": "standard_finetune"})})
    metrics, rows = score(label_config, run, model, tokenizer, fmt)
    metrics = {"student": student.pretrained or student.preset, **metrics}
    folder.mkdir()
    _write(folder, metrics, rows)
    logger.info(
        "evaluate | untrained %s | val acc %.3f | test acc %.3f",
        metrics["student"],
        metrics["val_accuracy"],
        metrics["test_accuracy"],
    )
    return metrics


def floor_accuracy(config: Config, run: RunDir) -> dict:
    """The trivial floor on the test split: always answering the train split's most common label, or a uniform
    guess among a row's choices, whichever scores higher."""
    task = get_task(config.task.name)
    train_file, test_file = run.corpus_file("train"), run.corpus_file("test")
    train = pq.read_table(train_file.path, filesystem=train_file.fs, columns=["gold"])["gold"].to_pylist()
    test = pq.read_table(test_file.path, filesystem=test_file.fs, columns=["question", "gold"]).to_pylist()
    counts = Counter(task.normalize(gold) for gold in train)
    counts.pop(None, None)
    candidates = []
    if counts:
        common = counts.most_common(1)[0][0]
        label = next(gold for gold in train if task.normalize(gold) == common)
        hits = sum(task.answers_match(label, row["gold"]) for row in test)
        candidates.append((hits / max(1, len(test)), f"always {label!r}, the train split's most common label"))
    chances = [task.answer_format.chance(row["question"]) for row in test]
    if test and all(chance is not None for chance in chances):
        candidates.append((sum(chances) / len(test), "a uniform guess among each row's choices"))
    accuracy, how = max(candidates, default=(0.0, "no label to guess"))
    return {"accuracy": round(accuracy, 4), "how": how}


def write_baselines(config: Config, run: RunDir) -> dict:
    """The untrained student and the floor, into summary.json ("baselines") for the report."""
    untrained, floor = evaluate_untrained(config, run), floor_accuracy(config, run)
    baselines = {
        "untrained_student": untrained["student"],
        "untrained_student_test_accuracy": untrained["test_accuracy"],
        "untrained_student_val_accuracy": untrained["val_accuracy"],
        "floor_test_accuracy": floor["accuracy"],
        "floor": floor["how"],
    }
    run.update_summary("baselines", baselines)
    return baselines
