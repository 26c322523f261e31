"""The student model: presets (built from config, or the paper's pretrained students) and loading.

A preset built from config (``t5-tiny`` ... ``t5-base-scratch``, ``llama-tiny``)
starts from random weights with the run's own tokenizer, so it needs no
download. A pretrained preset names a Hugging Face model and says what
training it at full size takes; ``student.pretrained`` takes any other
seq2seq or causal model by name or folder.

Sizes of the paper's students (full fine-tuning with AdamW keeps about 16
bytes per parameter: bf16 weights and gradients, fp32 master weights and two
Adam moments; activations come on top):

    T5 v1.1 / Flan-T5 base   250M   4 GB of states   1 GPU, plain DDP
    T5 v1.1 / Flan-T5 large  780M  12 GB of states   1 GPU of 24 GB+, or ZeRO-2 over 2+
    T5 v1.1 / Flan-T5 XXL     11B 176 GB of states   ZeRO-3 over 8 GPUs of 80 GB (or fewer with offload)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from raydsbs.config import StudentConfig, TrainConfig
from raydsbs.student.presets import PRESETS, Kind, StudentPreset

if TYPE_CHECKING:
    from raydsbs.student.batching import StudentFormat

logger = logging.getLogger(__name__)

T5_MODEL_TYPES = ("t5", "mt5", "umt5")
FORMAT_FILE = "raydsbs_student.json"  # in every saved model folder: how its inputs and outputs are written


def pretrained_source(config: StudentConfig) -> str | None:
    """The Hugging Face name or folder the student loads from; None when built from config."""
    return config.pretrained or PRESETS[config.preset].pretrained


def is_t5_name(name: str) -> bool:
    """Whether a preset or model name is a T5 (for refusing fp16 before anything loads)."""
    return "t5" in name.lower()


def student_kind(config: StudentConfig) -> Kind:
    """seq2seq or causal, read from the model's own config when it is a pretrained one."""
    source = pretrained_source(config)
    if source is None:
        return PRESETS[config.preset].kind
    from transformers import AutoConfig

    from raydsbs.teacher.model_cache import resolve_model

    loaded = AutoConfig.from_pretrained(resolve_model(source), trust_remote_code=config.trust_remote_code)
    return "seq2seq" if loaded.is_encoder_decoder else "causal"


def _from_config(preset: StudentPreset, tokenizer, dropout: float):
    from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

    special = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    if preset.kind == "causal":
        return LlamaForCausalLM(
            LlamaConfig(
                vocab_size=len(tokenizer),
                bos_token_id=tokenizer.eos_token_id,
                tie_word_embeddings=True,
                max_position_embeddings=1024,
                attention_dropout=dropout,
                **special,
                **preset.shape,
            )
        )
    return T5ForConditionalGeneration(
        T5Config(
            vocab_size=len(tokenizer),
            decoder_start_token_id=tokenizer.pad_token_id,
            # Tied input/output embeddings scale the logits by d_model^-0.5; an untied
            # head initialised from scratch starts with losses near 60 and trains slower.
            tie_word_embeddings=True,
            dropout_rate=dropout,
            **special,
            **preset.shape,
        )
    )


def fp16_refusal(precision: str, is_t5: bool) -> str | None:
    """Why a student can't train at ``precision``, or None: fp16 with a T5 is refused (checked on the
    config's names before anything loads, and on the loaded model's type)."""
    if precision == "fp16" and is_t5:
        return (
            "train.precision=fp16 with a T5 student: T5's activations grow past fp16's largest value (65504), "
            "so the loss turns inf/NaN. Use train.precision=bf16 (GPUs from Ampere on, and CPUs) or fp32."
        )
    return None


def build_student(config: StudentConfig, tokenizer, train: TrainConfig | None = None):
    """The Hugging Face model of ``config``: built from its preset's shape, or loaded pretrained."""
    source = pretrained_source(config)
    if source is None:
        model = _from_config(PRESETS[config.preset], tokenizer, config.dropout)
    else:
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

        from raydsbs.teacher.model_cache import resolve_model

        auto = AutoModelForSeq2SeqLM if student_kind(config) == "seq2seq" else AutoModelForCausalLM
        model = auto.from_pretrained(
            resolve_model(source),
            dtype="float32",  # fp32 master weights; autocast does bf16
            trust_remote_code=config.trust_remote_code,
        )
        if len(tokenizer) > model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(len(tokenizer))
    if train is not None and (refusal := fp16_refusal(train.precision, model.config.model_type in T5_MODEL_TYPES)):
        raise ValueError(refusal)
    return model


def save_student(model, tokenizer, folder: Path, fmt, state_dict: dict | None = None) -> None:
    """A self-contained folder: weights (safetensors; ``state_dict`` instead of the model's own when given),
    tokenizer, and how prompts and targets are written."""
    model.save_pretrained(folder, state_dict=state_dict)
    tokenizer.save_pretrained(folder)
    (folder / FORMAT_FILE).write_text(json.dumps(fmt.to_dict(), indent=2))


def student_format_of(folder: Path) -> StudentFormat:
    """How the student saved in ``folder`` reads its inputs and writes its outputs."""
    from raydsbs.student.batching import StudentFormat

    return StudentFormat(**json.loads((folder / FORMAT_FILE).read_text()))


def load_student(folder: Path, trust_remote_code: bool = False):
    """(model, tokenizer, StudentFormat) of a folder written by :func:`save_student`.

    A student with its own modelling code loads only with ``trust_remote_code``
    (``student.trust_remote_code`` of the run that trained it).
    """
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    fmt = student_format_of(folder)
    auto = AutoModelForSeq2SeqLM if fmt.kind == "seq2seq" else AutoModelForCausalLM
    return (
        auto.from_pretrained(folder, trust_remote_code=trust_remote_code),
        AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code),
        fmt,
    )


def saved_parameters(folder) -> int:
    """Parameters in a saved model folder (a :class:`raydsbs.storage.Location`), read from its safetensors
    headers alone: nothing is loaded or downloaded (a shared weight is saved, and counted, once)."""
    import struct

    total = 0
    for file in folder.glob("*.safetensors"):
        with file.fs.open_input_file(file.path) as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        for name, entry in header.items():
            if name != "__metadata__":
                count = 1
                for size in entry["shape"]:
                    count *= size
                total += count
    return total
