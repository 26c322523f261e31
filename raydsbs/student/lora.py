"""LoRA students (peft): low-rank adapters on a pretrained student's linear layers, the rest frozen.

A checkpoint holds the adapters (``adapter/``, peft's own folder) and their
optimizer state, not the frozen weights; the final ``model/`` of a training
is the pretrained student with the selected adapters merged in, a plain
Hugging Face folder, and the adapters are kept beside it.
"""

from __future__ import annotations

from pathlib import Path

from raydsbs.config import LoraConfig

ADAPTER_SUBDIR = "adapter"


def add_adapters(model, lora: LoraConfig, kind: str):
    """``model`` wrapped by peft with fresh adapters; only they require gradients."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import TaskType, get_peft_model

    task_type = TaskType.SEQ_2_SEQ_LM if kind == "seq2seq" else TaskType.CAUSAL_LM
    settings = PeftLoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type=task_type,
    )
    return get_peft_model(model, settings)


def has_adapters(model) -> bool:
    return hasattr(model, "peft_config")


def load_adapter_weights(model, folder: Path) -> None:
    """Put the adapter weights saved in ``folder`` into the peft-wrapped ``model``."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(folder / "adapter_model.safetensors"))


def merge_adapters(base, folder: Path):
    """The pretrained ``base`` with the adapters saved in ``folder`` merged into its weights (a plain model)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base, folder).merge_and_unload()
