"""Training rows for each method, and multi-task batches.

Each example gives a label row and, for step-by-step, a rationale row. With
``student.task_marker=input`` (the paper's code) the task marker prefixes the
input::

    encoder "predict: <question>" -> decoder "<label></s>"
    encoder "explain: <question>" -> decoder "<rationale></s>"

With ``task_marker=output`` the input is read once, and the marker opens each
target (it is fed, never scored)::

    encoder "<question>" -> decoder "predict: <label></s>" and "explain: <rationale></s>"

A causal student reads one sequence per task with input markers, scored on
the target only (``"predict: <question>\\n<label></s>"``). With output markers
both targets follow one copy of the prompt, each masked from the other, so
the prompt is computed once and each target sees what a row of its own would::

    "<question>\\n" "predict: <label></s>" "explain: <rationale></s>"
    positions 0..P-1     P..P+L-1               P..P+R-1    (the rationale block restarts at P)

Each task of a batch is padded on its own, to its longest row. An example
whose row the teacher rejected has no rationale; a batch computes the
rationale loss over the examples that have one.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

import torch

from raydsbs.config import StudentConfig

IGNORE = -100  # label value of positions that are not scored (padding, prompts, markers)
OBJECTIVES = ("label", "rationale")  # what the student learns: the two parts of its multi-task loss
MARKERS = {"label": "predict: ", "rationale": "explain: "}
BUCKET_WINDOW = 50  # global batches sorted by length together: similar lengths, still a shuffled order


@dataclass(frozen=True)
class TrainingExample:
    question: str
    label: str | None  # None: this row teaches the method nothing (the teacher rejected it)
    rationale: str | None = None  # None: the label task only


@dataclass(frozen=True)
class StudentFormat:
    """How a student's prompts and targets are written; saved with every model folder."""

    kind: str  # seq2seq | causal
    task_marker: str  # input | output
    max_input_tokens: int

    def prompt(self, task: str, question: str) -> str:
        """The encoder input (seq2seq) or prompt (causal) of ``task``; with output markers, one for both tasks."""
        text = MARKERS[task] + question if self.task_marker == "input" else question
        return text + "\n" if self.kind == "causal" else text

    def target_marker(self, task: str) -> str:
        """Text that opens the target and is given, not scored (output markers)."""
        return MARKERS[task] if self.task_marker == "output" else ""

    def marker_ids(self, tokenizer, task: str) -> list[int]:
        text = self.target_marker(task)
        return token_ids(tokenizer, [text], 64, special=False)[0] if text else []

    @property
    def packed(self) -> bool:
        """Whether both tasks share one sequence (a causal student with output markers)."""
        return self.kind == "causal" and self.task_marker == "output"

    def to_dict(self) -> dict:
        return asdict(self)


def student_format(config: StudentConfig, kind: str) -> StudentFormat:
    return StudentFormat(kind=kind, task_marker=config.task_marker, max_input_tokens=config.max_input_tokens)


def needs_teacher(method: str) -> bool:
    """Whether a method learns from the teacher's outputs (all but standard_finetune do)."""
    return method != "standard_finetune"


# What each method learns from one train row (``row``: id, question, gold) and the teacher's decision on it
# (``kept``: the row of teacher/distill.parquet, None when the teacher's output was rejected).
def _standard_finetune(row: dict, kept: dict | None, gold_labels: bool, answer_marker: str) -> TrainingExample:
    return TrainingExample(row["question"], row["gold"])


def _standard_distill(row: dict, kept: dict | None, gold_labels: bool, answer_marker: str) -> TrainingExample:
    return TrainingExample(row["question"], kept["teacher_label"] if kept else None)


def _step_by_step(row: dict, kept: dict | None, gold_labels: bool, answer_marker: str) -> TrainingExample:
    label = row["gold"] if gold_labels else (kept or {}).get("teacher_label")
    return TrainingExample(row["question"], label, kept["rationale"] if kept else None)


def _cot_finetune(row: dict, kept: dict | None, gold_labels: bool, answer_marker: str) -> TrainingExample:
    if kept is None:
        return TrainingExample(row["question"], None)
    label = row["gold"] if gold_labels else kept["teacher_label"]
    return TrainingExample(row["question"], f"{kept['rationale']} {answer_marker} {label}.")


METHOD_EXAMPLES = {
    "step_by_step": _step_by_step,
    "standard_finetune": _standard_finetune,
    "standard_distill": _standard_distill,
    "cot_finetune": _cot_finetune,
}


def training_examples(
    method: str, label_source: str, corpus: list[dict], distill: list[dict], answer_marker: str = "So the answer is"
) -> list[TrainingExample]:
    """One example per train row, in the corpus's order, so every method draws the same rows at a fraction.

    corpus: rows of corpus/train.parquet (id, question, gold);
    distill: rows of teacher/distill.parquet (id, question, gold, rationale, teacher_label).
    A row the teacher rejected still gives its gold label to standard_finetune and to step_by_step with gold
    labels (no rationale); it gives standard_distill, cot_finetune and teacher-labelled step_by_step nothing
    (``label`` None). cot_finetune's one target is "<rationale> <answer marker> <label>.".
    """
    if method not in METHOD_EXAMPLES:
        raise ValueError(f"unknown method {method!r}; known methods: {', '.join(METHOD_EXAMPLES)}")
    kept = {row["id"]: row for row in distill}
    make = METHOD_EXAMPLES[method]
    return [make(row, kept.get(row["id"]), label_source == "gold", answer_marker) for row in corpus]


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


def encode_task(
    texts_in: list[str], targets: list[str], limit: int, tokenizer, fmt: StudentFormat, task: str
) -> list[TaskRow]:
    """Token rows of one task: sources cut to max_input_tokens, targets to ``limit`` (EOS kept)."""
    seq2seq = fmt.kind == "seq2seq"
    sources = token_ids(tokenizer, [fmt.prompt(task, q) for q in texts_in], fmt.max_input_tokens, special=seq2seq)
    eos = tokenizer.eos_token_id
    marker = fmt.marker_ids(tokenizer, task)
    bodies = token_ids(tokenizer, targets, limit, special=False)
    return [
        TaskRow(source, marker + body[: limit - 1] + [eos], given=len(marker))
        for source, body in zip(sources, bodies, strict=True)
    ]


def encode(
    examples: list[TrainingExample],
    tokenizer,
    config: StudentConfig,
    fmt: StudentFormat,
    label_tokens: int | None = None,
) -> list[EncodedExample | None]:
    """Token ids of each example's rows, cut to the configured lengths (labels to ``label_tokens`` if given);
    None for an example without a label."""

    def task_rows(task: str, targets: list[str | None], limit: int) -> list[TaskRow | None]:
        present = [i for i, target in enumerate(targets) if target is not None]
        if not present:
            return [None] * len(targets)
        encoded = encode_task(
            [examples[i].question for i in present], [targets[i] for i in present], limit, tokenizer, fmt, task
        )
        rows: list[TaskRow | None] = [None] * len(targets)
        for i, row in zip(present, encoded, strict=True):
            rows[i] = row
        return rows

    labels = task_rows("label", [e.label for e in examples], label_tokens or config.max_label_tokens)
    rationales = task_rows(
        "rationale", [e.rationale if e.label is not None else None for e in examples], config.max_rationale_tokens
    )
    return [
        EncodedExample(label, rationale) if label else None for label, rationale in zip(labels, rationales, strict=True)
    ]


def pad_rows(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(row) for row in rows)
    return torch.tensor([row + [value] * (width - len(row)) for row in rows], dtype=torch.long)


def _scored(row: TaskRow) -> list[int]:
    return [IGNORE] * row.given + row.target[row.given :]


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


def _packed(batch: list[EncodedExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Both tasks of each example in one right-padded sequence: prompt, label block, rationale block.

    input_ids, position_ids, label_labels, rationale_labels [B, L]; attention_mask [B, 1, L, L], bool, True
    where a query may attend: the prompt and the earlier tokens of its own block (a padding position attends
    to itself only, so no row of the mask is empty).
    """
    sequences, positions, blocks, labels = [], [], [], {task: [] for task in OBJECTIVES}
    for example in batch:
        prompt = example.label.source
        ids, pos, block = list(prompt), list(range(len(prompt))), [0] * len(prompt)
        scored = {task: [IGNORE] * len(prompt) for task in OBJECTIVES}
        for number, (task, row) in enumerate(example.rows().items(), start=1):
            ids += row.target
            pos += range(len(prompt), len(prompt) + len(row.target))
            block += [number] * len(row.target)
            for other in OBJECTIVES:
                scored[other] += _scored(row) if other == task else [IGNORE] * len(row.target)
        sequences.append(ids)
        positions.append(pos)
        blocks.append(block)
        for task in OBJECTIVES:
            labels[task].append(scored[task])
    width = max(len(s) for s in sequences)
    block = pad_rows(blocks, -1)  # -1: padding
    same_or_prompt = (block[:, :, None] == block[:, None, :]) | (block[:, None, :] == 0)
    causal = torch.ones(width, width, dtype=torch.bool).tril()  # blocks follow the prompt in sequence order
    mask = same_or_prompt & causal & (block[:, None, :] >= 0)
    mask |= torch.eye(width, dtype=torch.bool)  # padding queries see themselves
    return {
        "input_ids": pad_rows(sequences, pad_id),
        "position_ids": pad_rows(positions, 0),
        "attention_mask": mask[:, None],
        **{f"{task}_labels": pad_rows(labels[task], IGNORE) for task in OBJECTIVES},
    }


def collate(batch: list[EncodedExample], fmt: StudentFormat, pad_id: int, start_id: int) -> dict[str, dict]:
    """One multi-task batch: {task: tensors} for each task present, each padded on its own.

    seq2seq, input markers: {task: input_ids [B_task, S_task], attention_mask, labels [B_task, T_task]}
    seq2seq, output markers: {"encoder": input_ids [B, S], attention_mask} and
        {task: decoder_input_ids [B_task, T_task], labels [B_task, T_task]} (the encoder runs once), with
        "rows" [B_rationale]: which encoder rows the rationale task decodes
    causal, input markers: {task: input_ids [B_task, L_task], attention_mask, labels} (IGNORE on prompt, padding)
    causal, output markers: {"packed": see :func:`_packed`}
    B_rationale counts the examples with a rationale; a task with no rows is left out.
    """
    if fmt.packed:
        return {"packed": _packed(batch, pad_id)}
    with_rationale = [i for i, e in enumerate(batch) if e.rationale is not None]
    columns = {"label": [e.label for e in batch]}
    if with_rationale:
        columns["rationale"] = [batch[i].rationale for i in with_rationale]
    if fmt.kind == "causal":
        return {task: _causal_task(rows, pad_id) for task, rows in columns.items()}
    shared_encoder = fmt.task_marker == "output"
    out = {
        task: _seq2seq_task(rows, pad_id, start_id, with_encoder=not shared_encoder) for task, rows in columns.items()
    }
    if shared_encoder:
        input_ids = pad_rows([row.source for row in columns["label"]], pad_id)
        out["encoder"] = {"input_ids": input_ids, "attention_mask": (input_ids != pad_id).long()}
        if "rationale" in out and len(with_rationale) < len(batch):
            out["rationale"]["rows"] = torch.tensor(with_rationale, dtype=torch.long)
    return out


def epoch_batches(
    count: int, batch_size: int, rank: int, world_size: int, seed: int, lengths: list[int] | None = None
) -> list[list[int]]:
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
        order = [
            i
            for start in range(0, len(order), window)
            for i in sorted(order[start : start + window], key=lengths.__getitem__)
        ]
    global_batches = [order[start : start + step] for start in range(0, len(order), step)]
    if lengths is not None:
        rng.shuffle(global_batches)
    return [batch[rank::world_size] for batch in global_batches]
