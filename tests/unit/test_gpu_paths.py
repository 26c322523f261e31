"""Choices made for GPUs that this CPU machine can still check: the precision `auto` picks on a GPU with and
without bf16, the dtype the vLLM engine is started with, and benchmarks/gpu_check.py on small shapes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from raydsbs.config import TeacherConfig, TrainConfig
from raydsbs.teacher.backends import vllm_engine_kwargs

REPO = Path(__file__).resolve().parents[2]


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


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_gpu_check_runs_its_two_cases_end_to_end_on_small_shapes(tmp_path):
    gpu_check = _gpu_check()
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--device", "cpu", "--tiny", "--steps", "2", "--warmup", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["tiny"] is True
    t5, lora = result["cases"]
    assert t5["case"] == "t5-tiny" and t5["trainable_parameters"] == t5["parameters"]
    assert lora["case"] == "llama-tiny-lora" and 0 < lora["trainable_parameters"] < lora["parameters"]
    for case in (t5, lora):
        assert case["samples_per_s"] > 0 and case["tokens_per_s"] > case["samples_per_s"] and case["mfu"] is None


def test_the_gpu_check_knows_the_peaks_of_common_gpus_by_whole_names():
    peak = _gpu_check().peak_tflops
    assert peak("NVIDIA H200") == 989.0 and peak("NVIDIA H100 PCIe") == 756.0 and peak("NVIDIA H100 80GB HBM3") == 989.0
    assert peak("NVIDIA L4") == 121.0 and peak("NVIDIA L40S") == 362.0 and peak("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak("Tesla T4") is None  # no bf16: MFU is left out, or given with --peak-tflops
