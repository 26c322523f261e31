"""Training rows for each method, and multi-task batches.

Each example gives a label row and, for step-by-step, a rationale row. With
``student.task_marker=input`` (the paper's code) the task marker prefixes the
input::

    encoder "predict: <question>" -> decoder "<label></s>"
    encoder "explain: <question>" -> decoder "<rationale></s>"

With ``task_marker=output`` the encoder reads the bare question once, and the
marker opens each target (it is fed to the decoder, never scored)::

    encoder "<question>" -> decoder "predict: <label></s>" and "explain: <rationale></s>"

A causal student reads one sequence per task, scored on the target only::

    "predict: <question>\\n<label></s>"    (output marker: "<question>\\npredict: <label></s>")

Each task of a batch is padded on its own, to its longest row.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

import torch

from raydsbs.config import StudentConfig

IGNORE = -100  # label value of positions that are not scored (padding, prompts, markers)
TASKS = ("label", "rationale")
MARKERS = {"label": "predict: ", "rationale": "explain: "}
BUCKET_WINDOW = 50  # global batches sorted by length together: similar lengths, still a shuffled order


@dataclass(frozen=True)
class TrainingExample:
    question: str
    label: str
    rationale: str | None = None  # None: the label task only


@dataclass(frozen=True)
class StudentFormat:
    """How a student's prompts and targets are written; saved with every model folder."""

    kind: str  # seq2seq | causal
    task_marker: str  # input | output
    max_input_tokens: int

    def prompt(self, task: str, question: str) -> str:
        """The encoder input (seq2seq) or prompt (causal) of ``task`` for ``question``."""
        if self.kind == "seq2seq":
            return MARKERS[task] + question if self.task_marker == "input" else question
        return MARKERS[task] + question + "\n" if self.task_marker == "input" else question + "\n" + MARKERS[task]

    def target_marker(self, task: str) -> str:
        """Text that opens the target and is given, not scored (seq2seq with output markers)."""
        return MARKERS[task] if self.kind == "seq2seq" and self.task_marker == "output" else ""

    def marker_ids(self, tokenizer, task: str) -> list[int]:
        text = self.target_marker(task)
        return token_ids(tokenizer, [text], 64, special=False)[0] if text else []

    def to_dict(self) -> dict:
        return asdict(self)


def student_format(config: StudentConfig, kind: str) -> StudentFormat:
    return StudentFormat(kind=kind, task_marker=config.task_marker, max_input_tokens=config.max_input_tokens)


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


def subsample_indices(count: int, fraction: float, seed: int) -> list[int]:
    """The first ``fraction`` of a seeded permutation of ``range(count)``, in order: smaller fractions are
    subsets of larger ones."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return sorted(order[: max(1, round(fraction * count))])


@dataclass(frozen=True)
class TaskRow:
    source: list[int]  # encoder input (seq2seq) or prompt (causal)
    target: list[int]  # decoder tokens (seq2seq) or continuation (causal), ending with EOS
    given: int = 0  # leading target tokens fed but not scored (the output marker)


@dataclass(frozen=True)
class EncodedExample:
    label: TaskRow
    rationale: TaskRow | None = None

    def rows(self) -> dict[str, TaskRow]:
        return {"label": self.label} if self.rationale is None else {"label": self.label, "rationale": self.rationale}

    def __len__(self) -> int:
        """Tokens in all rows: what length-bucketing sorts by."""
        return sum(len(row.source) + len(row.target) for row in self.rows().values())


def token_ids(tokenizer, texts: list[str], limit: int, special: bool) -> list[list[int]]:
    return tokenizer(texts, truncation=True, max_length=limit, add_special_tokens=special)["input_ids"]


def encode_task(texts_in: list[str], targets: list[str], limit: int, tokenizer, fmt: StudentFormat,
                task: str) -> list[TaskRow]:
    """Token rows of one task: sources cut to max_input_tokens, targets to ``limit`` (EOS kept)."""
    seq2seq = fmt.kind == "seq2seq"
    sources = token_ids(tokenizer, [fmt.prompt(task, q) for q in texts_in], fmt.max_input_tokens, special=seq2seq)
    eos = tokenizer.eos_token_id
    marker = fmt.marker_ids(tokenizer, task)
    bodies = token_ids(tokenizer, targets, limit, special=False)
    rows = []
    for source, body in zip(sources, bodies):
        rows.append(TaskRow(source, marker + body[: limit - 1] + [eos], given=len(marker)))
    return rows


def encode(examples: list[TrainingExample], tokenizer, config: StudentConfig, fmt: StudentFormat) -> list[EncodedExample]:
    """Token ids of each example's rows, cut to the configured lengths."""
    questions = [e.question for e in examples]
    labels = encode_task(questions, [e.label for e in examples], config.max_label_tokens, tokenizer, fmt, "label")
    if all(e.rationale is None for e in examples):
        return [EncodedExample(row) for row in labels]
    rationales = encode_task(questions, [e.rationale or "" for e in examples], config.max_rationale_tokens,
                             tokenizer, fmt, "rationale")
    return [EncodedExample(*pair) for pair in zip(labels, rationales)]


def pad_rows(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(row) for row in rows)
    return torch.tensor([row + [value] * (width - len(row)) for row in rows], dtype=torch.long)


def _scored(row: TaskRow) -> list[int]:
    return [IGNORE] * row.given + row.target[row.given:]


def _seq2seq_task(rows: list[TaskRow], pad_id: int, start_id: int, with_encoder: bool) -> dict[str, torch.Tensor]:
    batch = {"labels": pad_rows([_scored(row) for row in rows], IGNORE)}
    if with_encoder:
        batch["input_ids"] = pad_rows([row.source for row in rows], pad_id)
        batch["attention_mask"] = (batch["input_ids"] != pad_id).long()
    if any(row.given for row in rows):  # the model's own shift would turn the unscored marker into padding
        batch["decoder_input_ids"] = pad_rows([[start_id] + row.target[:-1] for row in rows], pad_id)
    return batch


def _causal_task(rows: list[TaskRow], pad_id: int) -> dict[str, torch.Tensor]:
    sequences = [row.source + row.target for row in rows]
    width = max(len(s) for s in sequences)
    return {
        "input_ids": pad_rows(sequences, pad_id),
        "attention_mask": torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences], dtype=torch.long),
        "labels": pad_rows([[IGNORE] * len(row.source) + _scored(row) for row in rows], IGNORE),
    }


def collate(batch: list[EncodedExample], fmt: StudentFormat, pad_id: int, start_id: int) -> dict[str, dict]:
    """One multi-task batch: {task: tensors} for each task present, each padded on its own.

    seq2seq, input markers: {task: input_ids [B, S_task], attention_mask, labels [B, T_task]}
    seq2seq, output markers: {"encoder": input_ids [B, S], attention_mask} and
        {task: decoder_input_ids [B, T_task], labels [B, T_task]} (the encoder runs once)
    causal: {task: input_ids [B, L_task], attention_mask, labels [B, L_task]} (IGNORE on prompt and padding)
    """
    tasks = [task for task in TASKS if all(task in e.rows() for e in batch)]
    columns = {task: [e.rows()[task] for e in batch] for task in tasks}
    if fmt.kind == "causal":
        return {task: _causal_task(rows, pad_id) for task, rows in columns.items()}
    shared_encoder = fmt.task_marker == "output"
    out = {task: _seq2seq_task(rows, pad_id, start_id, with_encoder=not shared_encoder) for task, rows in columns.items()}
    if shared_encoder:
        input_ids = pad_rows([row.source for row in columns["label"]], pad_id)
        out["encoder"] = {"input_ids": input_ids, "attention_mask": (input_ids != pad_id).long()}
    return out


def epoch_batches(count: int, batch_size: int, rank: int, world_size: int, seed: int,
                  lengths: list[int] | None = None) -> list[list[int]]:
    """This rank's batches of example indices for one epoch.

    Every rank gets the same number of batches (collectives must line up), so
    the shuffled order is padded by wrapping around to a multiple of
    world_size. With ``lengths``, examples are sorted by length within windows
    of BUCKET_WINDOW global batches and the batches shuffled again: a batch
    holds similar lengths (little padding) and the order stays random.
    """
    rng = random.Random(seed)
    order = list(range(count))
    rng.shuffle(order)
    per_rank = -(-count // world_size)
    order = (order * (world_size + 1))[: per_rank * world_size]
    step = batch_size * world_size
    if lengths is not None:
        window = step * BUCKET_WINDOW
        order = [i for start in range(0, len(order), window)
                 for i in sorted(order[start : start + window], key=lengths.__getitem__)]
    global_batches = [order[start : start + step] for start in range(0, len(order), step)]
    if lengths is not None:
        rng.shuffle(global_batches)
    return [batch[rank::world_size] for batch in global_batches]
