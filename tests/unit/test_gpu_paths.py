"""Choices made for GPUs that this CPU machine can still check: the precision `auto` picks on a GPU with and
without bf16, and the dtype the vLLM engine is started with."""

from __future__ import annotations

import pytest

from raydsbs.config import TeacherConfig, TrainConfig
from raydsbs.teacher.backends import vllm_engine_kwargs


@pytest.mark.parametrize(
    ("use_gpu", "gpu_bf16", "cpu_bf16", "expected"),
    [
        (True, True, False, "bf16"),  # A100, H100, L4
        (True, False, True, "fp32"),  # T4, V100: no bf16, whatever the host CPU has
        (False, False, True, "bf16"),  # a CPU with avx512_bf16 or AMX
        (False, True, False, "fp32"),  # training on the CPU of a GPU machine without bf16 instructions
    ],
)
def test_auto_precision_follows_the_device_that_trains(use_gpu, gpu_bf16, cpu_bf16, expected):
    train = TrainConfig(use_gpu=use_gpu)
    assert train.dtype_name(cpu_has_bf16=cpu_bf16, gpu_has_bf16=gpu_bf16) == expected
    assert TrainConfig(use_gpu=use_gpu, precision="fp32").dtype_name(cpu_bf16, gpu_bf16) == "fp32"  # as asked


def test_the_engine_takes_the_models_dtype_on_gpus_and_bf16_on_cpus():
    # "auto": vLLM falls back to fp16 on a GPU without bf16 (T4, V100) instead of refusing bfloat16
    assert vllm_engine_kwargs(TeacherConfig(use_gpu=True))["dtype"] == "auto"
    assert vllm_engine_kwargs(TeacherConfig())["dtype"] == "bfloat16"
