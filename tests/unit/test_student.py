"""The student's pieces on real (tiny) T5 and Llama models and a real trained tokenizer, no Ray."""

from __future__ import annotations

import random

import pytest
import torch

from raydsbs.config import StudentConfig, TrainConfig
from raydsbs.student.batching import (
    IGNORE,
    MARKERS,
    StudentFormat,
    TrainingExample,
    collate,
    encode,
    epoch_batches,
    training_examples,
)
from raydsbs.student.inference import predict
from raydsbs.student.learner import Learner
from raydsbs.student.model import build_student
from raydsbs.student.multitask import MultiTaskModel
from raydsbs.student.tokenizer import train_tokenizer
from raydsbs.tasks.arith import generate_problems

EXAMPLES = [
    TrainingExample("Mia has 3 apples. She buys 4 more. How many?", "7", "Mia has 3 + 4 = 7 apples."),
    TrainingExample("There are 2 boxes with 5 pens each. How many pens?", "10", "2 * 5 = 10 pens in all."),
    TrainingExample("Leo had 9 cards and gave away 6. How many are left?", "3", "9 - 6 = 3 cards are left."),
]
SEQ2SEQ = StudentFormat("seq2seq", "input", max_input_tokens=160)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    texts = [q + " " + str(a) for q, a in generate_problems(200, seed=0)]
    texts += list(MARKERS.values()) + [e.rationale for e in EXAMPLES]
    return train_tokenizer(texts, vocab_size=300, target=tmp_path_factory.mktemp("tok") / "tokenizer")


def _model(tokenizer, preset: str = "t5-tiny"):
    torch.manual_seed(0)
    return build_student(StudentConfig(preset=preset, dropout=0.0), tokenizer)  # compare math, not random masks


def _batch(tokenizer, fmt: StudentFormat, examples=EXAMPLES):
    encoded = encode(examples, tokenizer, StudentConfig(), fmt)
    return collate(encoded, fmt, tokenizer.pad_token_id, tokenizer.pad_token_id)


def _reference_loss(model, tokenizer, prefix: str, targets: list[str]) -> torch.Tensor:
    """The paper's scheme for one task: its own prefix, its own padding, the model's own loss."""
    inputs = tokenizer([prefix + e.question for e in EXAMPLES], return_tensors="pt", padding=True)
    labels = tokenizer(targets, return_tensors="pt", padding=True)["input_ids"]
    labels[labels == tokenizer.pad_token_id] = IGNORE
    return model(**inputs, labels=labels).loss


def test_tokenizer_round_trips_text_and_splits_digits(tokenizer):
    text = "predict: Mia has 128 apples, and 7 more!"
    ids = tokenizer(text)["input_ids"]
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert {"1", "2", "8"} <= set(tokenizer.convert_ids_to_tokens(ids))
    assert tokenizer.unk_token_id not in tokenizer("unseen wörds ✓")["input_ids"]  # byte-level: no unknowns


def test_fidelity_with_the_papers_two_pass_scheme_over_training_steps(tokenizer):
    """Ours (label + λ·rationale, our batches) against the paper's (α·label + (1−α)·rationale, two passes).

    λ = (1 − α)/α makes ours the reference times 1/α; Adam is blind to that
    constant, so with the same seed the per-task losses must match step by step.
    """
    alpha = 0.4
    ours = Learner(
        _model(tokenizer),
        TrainConfig(rationale_weight=(1 - alpha) / alpha, learning_rate=1e-3, precision="fp32", max_grad_norm=1e9),
        distributed=False,
        device=torch.device("cpu"),
    )
    reference = _model(tokenizer)
    optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-3, weight_decay=0.0)
    batch = _batch(tokenizer, SEQ2SEQ)
    for step in range(5):
        label, rationale = (
            _reference_loss(reference, tokenizer, MARKERS["label"], [e.label for e in EXAMPLES]),
            _reference_loss(reference, tokenizer, MARKERS["rationale"], [e.rationale for e in EXAMPLES]),
        )
        (alpha * label + (1 - alpha) * rationale).backward()
        optimizer.step()
        optimizer.zero_grad()
        _, our_label, our_rationale = ours.micro_step(batch, boundary=True)
        assert our_label == pytest.approx(label.item(), rel=1e-4), f"label loss differs at step {step}"
        assert our_rationale == pytest.approx(rationale.item(), rel=1e-4), f"rationale loss differs at step {step}"


def test_output_markers_encode_once_and_score_only_the_targets(tokenizer):
    fmt = StudentFormat("seq2seq", "output", max_input_tokens=160)
    model = _model(tokenizer).eval()
    batch = _batch(tokenizer, fmt)
    assert set(batch) == {"encoder", "label", "rationale"} and "input_ids" not in batch["label"]
    marker = len(fmt.marker_ids(tokenizer, "label"))
    assert (batch["label"]["labels"][:, :marker] == IGNORE).all()
    label_loss, rationale_loss = MultiTaskModel(model)(batch)
    for task, loss in (("label", label_loss), ("rationale", rationale_loss)):  # as if the encoder ran twice
        alone = model(**batch["encoder"], **batch[task]).loss
        assert loss.item() == pytest.approx(alone.item(), rel=1e-5)


def test_causal_rows_score_the_target_only(tokenizer):
    fmt = StudentFormat("causal", "input", max_input_tokens=160)
    model = _model(tokenizer, "llama-tiny").eval()
    batch = _batch(tokenizer, fmt)
    rows = batch["label"]
    prompt = tokenizer(fmt.prompt("label", EXAMPLES[0].question), add_special_tokens=False)["input_ids"]
    assert (rows["labels"][0, : len(prompt)] == IGNORE).all()
    scored = rows["labels"][0][rows["labels"][0] != IGNORE].tolist()
    assert tokenizer.decode(scored, skip_special_tokens=True) == "7" and scored[-1] == tokenizer.eos_token_id
    losses = dict(zip(("label", "rationale"), MultiTaskModel(model)(batch), strict=True))
    for task, loss in losses.items():  # the mean cross-entropy of the targets' tokens, each row read unpadded
        total, scored_tokens = 0.0, 0
        for ids, mask, labels in zip(
            *(batch[task][key] for key in ("input_ids", "attention_mask", "labels")), strict=True
        ):
            ids, labels = ids[mask.bool()], labels[mask.bool()]
            logits = model(input_ids=ids[None]).logits[0, :-1]
            total += torch.nn.functional.cross_entropy(logits, labels[1:], ignore_index=IGNORE, reduction="sum").item()
            scored_tokens += int((labels[1:] != IGNORE).sum())
        assert loss.item() == pytest.approx(total / scored_tokens, rel=1e-5), task


def test_label_only_batches_have_zero_rationale_loss(tokenizer):
    label_only = [TrainingExample(e.question, e.label) for e in EXAMPLES]
    batch = _batch(tokenizer, SEQ2SEQ, label_only)
    assert set(batch) == {"label"}
    _, rationale_loss = MultiTaskModel(_model(tokenizer))(batch)
    assert rationale_loss.item() == 0.0


def test_each_task_is_padded_on_its_own(tokenizer):
    batch = _batch(tokenizer, SEQ2SEQ)
    assert batch["label"]["labels"].shape[1] < batch["rationale"]["labels"].shape[1]
    for rows in batch.values():
        assert ((rows["input_ids"] == tokenizer.pad_token_id) == (rows["attention_mask"] == 0)).all()
        assert (rows["labels"] != tokenizer.pad_token_id).all()  # padding is IGNORE, never a target


def test_truncation_limits_keep_the_end_of_sequence(tokenizer):
    config = StudentConfig(max_input_tokens=8, max_label_tokens=2, max_rationale_tokens=4)
    (row, *_) = encode(EXAMPLES, tokenizer, config, StudentFormat("seq2seq", "input", 8))
    assert len(row.label.source) == 8 and len(row.label.target) <= 2 and len(row.rationale.target) == 4
    assert row.rationale.target[-1] == tokenizer.eos_token_id


@pytest.mark.parametrize(
    "fmt", [SEQ2SEQ, StudentFormat("seq2seq", "output", 160), StudentFormat("causal", "input", 160)]
)
def test_prediction_returns_one_string_per_question(tokenizer, fmt):
    model = _model(tokenizer, "llama-tiny" if fmt.kind == "causal" else "t5-tiny")
    outputs = predict(model, tokenizer, fmt, [e.question for e in EXAMPLES], "label", max_new_tokens=4, batch_size=2)
    assert len(outputs) == 3 and all(isinstance(text, str) for text in outputs)
    assert not any(MARKERS["label"].strip() in text for text in outputs)  # the given marker is not echoed


def test_fp16_with_a_t5_student_is_refused_with_the_reason():
    from raydsbs.config import ConfigError
    from raydsbs.resolve import load_config

    with pytest.raises(ConfigError, match="overflow|65504"):
        load_config(None, ["train.precision=fp16", "train.use_gpu=true", "student.preset=flan-t5-base"])
    with pytest.raises(ConfigError, match="needs a GPU"):
        load_config(None, ["train.precision=fp16", "student.preset=llama-tiny"])
    with pytest.raises(ConfigError, match="zero_stage=3"):
        load_config(None, ["train.offload_parameters=true", "train.zero_stage=2"])
    load_config(None, ["train.precision=fp16", "train.use_gpu=true", "student.preset=llama-tiny"])


def test_each_method_learns_its_own_targets_from_the_same_rows():
    """One example per train row for every method; a row the teacher rejected (b) keeps its gold label only."""
    corpus = [{"id": "a", "question": "q1", "gold": "1"}, {"id": "b", "question": "q2", "gold": "2"}]
    distill = [{"id": "a", "question": "q1", "gold": "1", "rationale": "r1", "teacher_label": "5"}]
    assert training_examples("standard_finetune", "gold", corpus, distill) == [
        TrainingExample("q1", "1"),
        TrainingExample("q2", "2"),
    ]
    assert training_examples("standard_distill", "gold", corpus, distill) == [
        TrainingExample("q1", "5"),
        TrainingExample("q2", None),
    ]
    assert training_examples("step_by_step", "gold", corpus, distill) == [
        TrainingExample("q1", "1", "r1"),
        TrainingExample("q2", "2"),
    ]
    assert training_examples("step_by_step", "teacher", corpus, distill) == [
        TrainingExample("q1", "5", "r1"),
        TrainingExample("q2", None),
    ]
    assert training_examples("cot_finetune", "gold", corpus, distill, "So the answer is") == [
        TrainingExample("q1", "r1 So the answer is 1."),
        TrainingExample("q2", None),
    ]
    assert (
        training_examples("cot_finetune", "teacher", corpus, distill, "The answer is")[0].label == "r1 The answer is 5."
    )
    with pytest.raises(ValueError, match="known methods: step_by_step"):
        training_examples("cot", "gold", corpus, distill)


def test_every_configurable_method_has_its_examples():
    from raydsbs.config import METHODS
    from raydsbs.student.batching import METHOD_EXAMPLES
    from raydsbs.student.launcher import IGNORED_KEYS

    assert set(METHODS) == set(METHOD_EXAMPLES) == set(IGNORED_KEYS)


def test_subsamples_are_nested_and_seeded():
    from raydsbs.student.ingest import subsample_positions

    half, quarter = subsample_positions(100, 0.5, seed=1).tolist(), subsample_positions(100, 0.25, seed=1).tolist()
    assert len(half) == 50 and len(quarter) == 25 and set(quarter) <= set(half)
    assert half == sorted(half) and subsample_positions(100, 0.5, seed=2).tolist() != half
    assert subsample_positions(100, 0.001, seed=1).size == 1
    # the permutation a shuffle of the rows' list makes, as the subsample always drew
    order = list(range(100))
    random.Random(1).shuffle(order)
    assert half == sorted(order[:50])


@pytest.mark.parametrize("bucketing", [False, True])
@pytest.mark.parametrize("count, world", [(10, 2), (7, 2), (5, 3), (1, 2), (1000, 2)])
def test_every_rank_gets_the_same_number_of_batches_and_all_rows(count, world, bucketing):
    lengths = [(i * 37) % 101 for i in range(count)] if bucketing else None
    per_rank = [epoch_batches(count, 4, rank, world, seed=0, lengths=lengths) for rank in range(world)]
    assert len({len(batches) for batches in per_rank}) == 1
    assert [len(b) for b in per_rank[0]] == [len(b) for b in per_rank[-1]]
    seen = {i for batches in per_rank for batch in batches for i in batch}
    assert seen == set(range(count))


def test_length_buckets_cut_padding_and_keep_a_random_order():
    lengths = [(i * 37) % 101 for i in range(2000)]

    def padding(batches):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    plain, bucketed = epoch_batches(2000, 16, 0, 1, seed=0), epoch_batches(2000, 16, 0, 1, seed=0, lengths=lengths)
    assert padding(bucketed) < 0.2 * padding(plain)
    firsts = [lengths[b[0]] for b in bucketed]
    assert firsts != sorted(firsts)  # batches are not served shortest first
    assert epoch_batches(2000, 16, 0, 1, seed=1, lengths=lengths) != bucketed


def test_gradient_accumulation_steps_only_at_the_boundary(tokenizer):
    learner = Learner(
        _model(tokenizer), TrainConfig(gradient_accumulation_steps=2), distributed=False, device=torch.device("cpu")
    )
    before = [p.detach().clone() for p in learner.module.parameters()]
    batch = _batch(tokenizer, SEQ2SEQ)
    learner.micro_step(batch, boundary=False)
    assert all(torch.equal(a, b) for a, b in zip(before, learner.module.parameters(), strict=True))
    assert any(p.grad is not None for p in learner.module.parameters())  # summed, waiting for the boundary
    learner.micro_step(batch, boundary=True)
    assert not all(torch.equal(a, b) for a, b in zip(before, learner.module.parameters(), strict=True))
    assert all(p.grad is None for p in learner.module.parameters())


def test_a_checkpoint_restores_weights_optimizer_and_progress(tokenizer, tmp_path):
    from raydsbs.student.learner import Progress

    def learner():
        return Learner(_model(tokenizer), TrainConfig(), distributed=False, device=torch.device("cpu"))

    trained, batch = learner(), _batch(tokenizer, SEQ2SEQ)
    trained.micro_step(batch, boundary=True)
    trained.save(
        tmp_path,
        Progress(epoch=3, batch=5, optimizer_steps=41),
        rank=0,
        save_model=lambda model, folder, weights: model.save_pretrained(folder, state_dict=weights),
    )
    restored = learner()
    assert restored.restore(tmp_path) == Progress(epoch=3, batch=5, optimizer_steps=41)
    assert all(
        torch.equal(a, b) for a, b in zip(trained.module.parameters(), restored.module.parameters(), strict=True)
    )
    # The same next step from both: Adam's moments came back too.
    assert trained.micro_step(batch, boundary=True) == pytest.approx(restored.micro_step(batch, boundary=True))
    assert all(
        torch.allclose(a, b) for a, b in zip(trained.module.parameters(), restored.module.parameters(), strict=True)
    )


MIXED = [EXAMPLES[0], TrainingExample(EXAMPLES[1].question, EXAMPLES[1].label), EXAMPLES[2]]  # one rejected row


def _separate_losses(model, tokenizer, fmt: StudentFormat, examples) -> tuple[float, float]:
    """Each task of each example in a forward pass of its own, as the paper's two passes compute it: the
    (label, rationale) mean token losses over all scored tokens of each task."""
    totals = {task: [0.0, 0] for task in ("label", "rationale")}
    for example in encode(examples, tokenizer, StudentConfig(), fmt):
        for task, row in example.rows().items():
            scored = [IGNORE] * row.given + row.target[row.given :]
            if fmt.kind == "causal":
                inputs = {
                    "input_ids": torch.tensor([row.source + row.target]),
                    "labels": torch.tensor([[IGNORE] * len(row.source) + scored]),
                }
            else:
                inputs = {
                    "input_ids": torch.tensor([row.source]),
                    "labels": torch.tensor([scored]),
                    "decoder_input_ids": torch.tensor([[tokenizer.pad_token_id] + row.target[:-1]]),
                }
            count = sum(1 for token in scored if token != IGNORE)
            totals[task][0] += model(**inputs).loss.item() * count
            totals[task][1] += count
    return totals["label"][0] / totals["label"][1], totals["rationale"][0] / totals["rationale"][1]


@pytest.mark.parametrize(
    "fmt",
    [
        StudentFormat("causal", "output", 160),
        StudentFormat("seq2seq", "output", 160),
        StudentFormat("causal", "input", 160),
    ],
    ids=lambda f: f"{f.kind}-{f.task_marker}",
)
def test_both_tasks_from_one_read_of_the_input_give_the_two_pass_losses(tokenizer, fmt):
    """The packed causal sequence (block mask, restarted positions) and the shared seq2seq encoder give each
    task the loss a forward pass of its own gives, also when a row has no rationale."""
    model = _model(tokenizer, "llama-tiny" if fmt.kind == "causal" else "t5-tiny").eval()
    batch = collate(encode(MIXED, tokenizer, StudentConfig(), fmt), fmt, tokenizer.pad_token_id, tokenizer.pad_token_id)
    assert ("packed" in batch) == fmt.packed
    label_loss, rationale_loss = MultiTaskModel(model)(batch)
    expected_label, expected_rationale = _separate_losses(model, tokenizer, fmt, MIXED)
    assert label_loss.item() == pytest.approx(expected_label, rel=1e-4)
    assert rationale_loss.item() == pytest.approx(expected_rationale, rel=1e-4)


def test_a_packed_rationale_never_sees_the_label(tokenizer):
    fmt = StudentFormat("causal", "output", 160)
    packed = collate(encode(EXAMPLES[:1], tokenizer, StudentConfig(), fmt), fmt, tokenizer.pad_token_id, 0)["packed"]
    mask, labels = packed["attention_mask"][0, 0], packed["label_labels"][0]
    label_positions = (labels != IGNORE).nonzero().flatten()
    rationale_positions = (packed["rationale_labels"][0] != IGNORE).nonzero().flatten()
    assert not mask[rationale_positions][:, label_positions].any()
    prompt = len(encode(EXAMPLES[:1], tokenizer, StudentConfig(), fmt)[0].label.source)
    assert mask[rationale_positions][:, :prompt].all() and mask[label_positions][:, :prompt].all()
    # the rationale block restarts where the label block started: positions as if it were a row of its own
    assert packed["position_ids"][0, prompt] == prompt
    assert packed["position_ids"][0, rationale_positions[0] - 1] >= prompt


@pytest.mark.parametrize("kind", ["causal", "seq2seq"])
def test_a_lora_student_trains_its_adapters_only_checkpoints_them_and_merges(tokenizer, tmp_path, kind):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from raydsbs.config import LoraConfig
    from raydsbs.student.learner import Progress
    from raydsbs.student.lora import ADAPTER_SUBDIR, add_adapters, merge_adapters

    fmt = StudentFormat(kind, "output", 160)
    auto = AutoModelForCausalLM if kind == "causal" else AutoModelForSeq2SeqLM
    base = tmp_path / "base"
    _model(tokenizer, "llama-tiny" if kind == "causal" else "t5-tiny").save_pretrained(base)  # "pretrained"

    def learner():
        model = add_adapters(auto.from_pretrained(base), LoraConfig(rank=4, dropout=0.0), kind)
        return Learner(
            model, TrainConfig(learning_rate=1e-2, precision="fp32"), distributed=False, device=torch.device("cpu")
        )

    trained, batch = learner(), _batch(tokenizer, fmt)
    frozen = {name: p.detach().clone() for name, p in trained.module.named_parameters() if not p.requires_grad}
    adapters = {name: p.detach().clone() for name, p in trained.module.named_parameters() if p.requires_grad}
    assert adapters and all("lora_" in name for name in adapters)
    for _ in range(2):
        trained.micro_step(batch, boundary=True)
    named = dict(trained.module.named_parameters())
    assert all(torch.equal(named[name], value) for name, value in frozen.items())
    assert any(not torch.equal(named[name], value) for name, value in adapters.items())

    trained.save(
        tmp_path / "ckpt",
        Progress(optimizer_steps=2),
        rank=0,
        save_model=lambda model, folder, weights: model.save_pretrained(folder, state_dict=weights),
    )
    assert (tmp_path / "ckpt" / ADAPTER_SUBDIR / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "ckpt" / "model").exists()  # the frozen weights are not copied into checkpoints
    restored = learner()
    assert restored.restore(tmp_path / "ckpt") == Progress(optimizer_steps=2)
    assert trained.micro_step(batch, boundary=True) == pytest.approx(restored.micro_step(batch, boundary=True))

    # model/ of a LoRA training: the base with the adapters merged in, a plain folder that predicts as they do
    merge_adapters(auto.from_pretrained(base), tmp_path / "ckpt" / ADAPTER_SUBDIR).save_pretrained(tmp_path / "merged")
    merged = auto.from_pretrained(tmp_path / "merged").eval()
    assert not hasattr(merged, "peft_config")
    adapted = learner()
    adapted.restore(tmp_path / "ckpt")
    ids = torch.tensor([[5, 6, 7, 8]])
    inputs = {"input_ids": ids} if kind == "causal" else {"input_ids": ids, "decoder_input_ids": ids}
    with torch.no_grad():
        assert torch.allclose(merged(**inputs).logits, adapted.module.eval()(**inputs).logits, atol=1e-5)
        untouched = auto.from_pretrained(base).eval()(**inputs).logits
        assert not torch.allclose(merged(**inputs).logits, untouched, atol=1e-4)
