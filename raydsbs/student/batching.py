"""Training rows for each method, and multi-task batches.

Each example gives a label row and, for step-by-step, a rationale row::

    "predict: <question>" -> "<label>"
    "explain: <question>" -> "<rationale>"

(the task prefixes of the paper's code). Both rows of an example go into the
same batch, padded to the longest row in it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from raydsbs.config import StudentConfig
from raydsbs.student.loss import IGNORE, LABEL_TASK, RATIONALE_TASK

LABEL_PREFIX = "predict: "
RATIONALE_PREFIX = "explain: "


@dataclass(frozen=True)
class TrainingExample:
    question: str
    label: str
    rationale: str | None = None  # None: the label task only


def needs_teacher(method: str) -> bool:
    """Whether a method learns from the teacher's outputs (all but standard_finetune do)."""
    return method != "standard_finetune"


def training_examples(method: str, label_source: str, corpus: list[dict], distill: list[dict]) -> list[TrainingExample]:
    """The examples of one method.

    corpus: rows of corpus/train.parquet (id, question, gold);
    distill: rows of teacher/distill.parquet (id, question, gold, rationale, teacher_label).
    standard_finetune learns gold labels of the whole train split (it needs no
    teacher); standard_distill learns the teacher's labels; step_by_step learns
    labels (gold or teacher) and the teacher's rationales.
    """
    if not needs_teacher(method):
        return [TrainingExample(row["question"], row["gold"]) for row in corpus]
    if method == "standard_distill":
        return [TrainingExample(row["question"], row["teacher_label"]) for row in distill]
    if method == "step_by_step":
        key = "gold" if label_source == "gold" else "teacher_label"
        return [TrainingExample(row["question"], row[key], row["rationale"]) for row in distill]
    raise ValueError(f"unknown method {method!r}")


def subsample(items: list, fraction: float, seed: int) -> list:
    """The first ``fraction`` of a seeded permutation: smaller fractions are subsets of larger ones."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    keep = max(1, round(fraction * len(items)))
    return [items[i] for i in sorted(order[:keep])]


@dataclass(frozen=True)
class EncodedExample:
    label_input: list[int]
    label_target: list[int]
    rationale_input: list[int] | None = None
    rationale_target: list[int] | None = None


def encode(examples: list[TrainingExample], tokenizer, config: StudentConfig) -> list[EncodedExample]:
    """Token ids of each example's rows, cut to the configured lengths."""
    def ids(texts: list[str], limit: int) -> list[list[int]]:
        return tokenizer(texts, truncation=True, max_length=limit)["input_ids"]

    questions = [e.question for e in examples]
    label_inputs = ids([LABEL_PREFIX + q for q in questions], config.max_input_tokens)
    label_targets = ids([e.label for e in examples], config.max_label_tokens)
    if all(e.rationale is None for e in examples):
        return [EncodedExample(i, t) for i, t in zip(label_inputs, label_targets)]
    rationale_inputs = ids([RATIONALE_PREFIX + q for q in questions], config.max_input_tokens)
    rationale_targets = ids([e.rationale or "" for e in examples], config.max_rationale_tokens)
    return [EncodedExample(*row) for row in zip(label_inputs, label_targets, rationale_inputs, rationale_targets)]


def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(row) for row in rows)
    return torch.tensor([row + [value] * (width - len(row)) for row in rows], dtype=torch.long)


def collate(batch: list[EncodedExample], pad_id: int) -> dict[str, torch.Tensor]:
    """One padded batch: label rows first, then rationale rows.

    Returns input_ids, attention_mask [R, S]; labels [R, T] (IGNORE on padding);
    task_ids [R]; R = len(batch) or 2 · len(batch).
    """
    inputs = [e.label_input for e in batch]
    targets = [e.label_target for e in batch]
    tasks = [LABEL_TASK] * len(batch)
    with_rationale = [e for e in batch if e.rationale_input is not None]
    inputs += [e.rationale_input for e in with_rationale]
    targets += [e.rationale_target for e in with_rationale]
    tasks += [RATIONALE_TASK] * len(with_rationale)
    input_ids = _pad(inputs, pad_id)
    return {
        "input_ids": input_ids,
        "attention_mask": (input_ids != pad_id).long(),
        "labels": _pad(targets, IGNORE),
        "task_ids": torch.tensor(tasks, dtype=torch.long),
    }


def epoch_batches(count: int, batch_size: int, rank: int, world_size: int, seed: int) -> list[list[int]]:
    """This rank's batches of example indices for one epoch.

    Every rank gets the same number of batches (collectives must line up), so
    the shuffled order is padded by wrapping around to a multiple of world_size.
    """
    order = list(range(count))
    random.Random(seed).shuffle(order)
    per_rank = -(-count // world_size)
    order = (order * (world_size + 1))[: per_rank * world_size]
    mine = order[rank::world_size]
    return [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]
