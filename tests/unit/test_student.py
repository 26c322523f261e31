"""The student's pieces on a real (tiny) T5 and a real trained tokenizer, no Ray."""

from __future__ import annotations

import pytest
import torch

from raydsbs.config import StudentConfig
from raydsbs.student.batching import (LABEL_PREFIX, RATIONALE_PREFIX, TrainingExample, collate, encode, epoch_batches,
                                      subsample, training_examples)
from raydsbs.student.loss import IGNORE, multitask_loss, task_mean_losses
from raydsbs.student.model import build_student
from raydsbs.student.tokenizer import train_tokenizer
from raydsbs.tasks.arith import generate_problems

EXAMPLES = [
    TrainingExample("Mia has 3 apples. She buys 4 more. How many?", "7", "Mia has 3 + 4 = 7 apples."),
    TrainingExample("There are 2 boxes with 5 pens each. How many pens?", "10", "2 * 5 = 10 pens in all."),
    TrainingExample("Leo had 9 cards and gave away 6. How many are left?", "3", "9 - 6 = 3 cards are left."),
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    texts = [q + " " + str(a) for q, a in generate_problems(200, seed=0)]
    texts += [LABEL_PREFIX, RATIONALE_PREFIX] + [e.rationale for e in EXAMPLES]
    return train_tokenizer(texts, vocab_size=300, target=tmp_path_factory.mktemp("tok") / "tokenizer")


def test_tokenizer_round_trips_text_and_splits_digits(tokenizer):
    text = "predict: Mia has 128 apples, and 7 more!"
    ids = tokenizer(text)["input_ids"]
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert {"1", "2", "8"} <= set(tokenizer.convert_ids_to_tokens(ids))
    assert tokenizer.unk_token_id not in tokenizer("unseen wörds ✓")["input_ids"]  # byte-level: no unknowns


def test_multitask_loss_equals_two_separate_forward_passes(tokenizer):
    """The paper's scheme runs one forward pass per task prefix, each padded on its own."""
    torch.manual_seed(0)
    model = build_student(StudentConfig(preset="t5-tiny"), tokenizer).eval()
    encoded = encode(EXAMPLES, tokenizer, StudentConfig())
    batch = collate(encoded, tokenizer.pad_token_id)
    assert batch["task_ids"].tolist() == [0, 0, 0, 1, 1, 1]
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).logits
    label_loss, rationale_loss = task_mean_losses(logits, batch["labels"], batch["task_ids"])

    def reference(prefix: str, targets: list[str]) -> torch.Tensor:
        inputs = tokenizer([prefix + e.question for e in EXAMPLES], return_tensors="pt", padding=True)
        labels = tokenizer(targets, return_tensors="pt", padding=True)["input_ids"]
        labels[labels == tokenizer.pad_token_id] = IGNORE
        return model(**inputs, labels=labels).loss

    assert label_loss.item() == pytest.approx(reference(LABEL_PREFIX, [e.label for e in EXAMPLES]).item(), rel=1e-5)
    assert rationale_loss.item() == pytest.approx(
        reference(RATIONALE_PREFIX, [e.rationale for e in EXAMPLES]).item(), rel=1e-5)
    assert multitask_loss(label_loss, rationale_loss, 0.5).item() == pytest.approx(
        label_loss.item() + 0.5 * rationale_loss.item())


def test_label_only_batches_have_zero_rationale_loss(tokenizer):
    model = build_student(StudentConfig(preset="t5-tiny"), tokenizer).eval()
    label_only = [TrainingExample(e.question, e.label) for e in EXAMPLES]
    batch = collate(encode(label_only, tokenizer, StudentConfig()), tokenizer.pad_token_id)
    assert batch["task_ids"].tolist() == [0, 0, 0]
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).logits
    _, rationale_loss = task_mean_losses(logits, batch["labels"], batch["task_ids"])
    assert rationale_loss.item() == 0.0


def test_collate_pads_and_masks(tokenizer):
    batch = collate(encode(EXAMPLES, tokenizer, StudentConfig()), tokenizer.pad_token_id)
    assert batch["input_ids"].shape[0] == batch["labels"].shape[0] == 6
    assert ((batch["input_ids"] == tokenizer.pad_token_id) == (batch["attention_mask"] == 0)).all()
    assert (batch["labels"] != tokenizer.pad_token_id).all()  # padding is IGNORE, never a target


def test_truncation_limits(tokenizer):
    config = StudentConfig(max_input_tokens=8, max_label_tokens=2, max_rationale_tokens=4)
    (row, *_) = encode(EXAMPLES, tokenizer, config)
    assert len(row.label_input) == 8 and len(row.label_target) <= 2 and len(row.rationale_target) == 4


def test_each_method_learns_its_own_targets():
    corpus = [{"id": "a", "question": "q1", "gold": "1"}, {"id": "b", "question": "q2", "gold": "2"}]
    distill = [{"id": "a", "question": "q1", "gold": "1", "rationale": "r1", "teacher_label": "5"}]
    assert training_examples("standard_finetune", "gold", corpus, distill) == [
        TrainingExample("q1", "1"), TrainingExample("q2", "2")]
    assert training_examples("standard_distill", "gold", corpus, distill) == [TrainingExample("q1", "5")]
    assert training_examples("step_by_step", "gold", corpus, distill) == [TrainingExample("q1", "1", "r1")]
    assert training_examples("step_by_step", "teacher", corpus, distill) == [TrainingExample("q1", "5", "r1")]


def test_subsamples_are_nested_and_seeded():
    items = list(range(100))
    half, quarter = subsample(items, 0.5, seed=1), subsample(items, 0.25, seed=1)
    assert len(half) == 50 and len(quarter) == 25 and set(quarter) <= set(half)
    assert subsample(items, 0.5, seed=2) != half
    assert subsample(items, 0.001, seed=1) != []


@pytest.mark.parametrize("count, world", [(10, 2), (7, 2), (5, 3), (1, 2)])
def test_every_rank_gets_the_same_number_of_batches_and_all_rows(count, world):
    per_rank = [epoch_batches(count, 2, rank, world, seed=0) for rank in range(world)]
    assert len({len(batches) for batches in per_rank}) == 1
    seen = {i for batches in per_rank for batch in batches for i in batch}
    assert seen == set(range(count))
