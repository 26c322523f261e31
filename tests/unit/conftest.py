"""Unit tests run without a Ray cluster and without vLLM: each is checked, after it ends, to have started
neither (the integration tests, under tests/integration, start real ones)."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def no_ray_cluster_and_no_vllm():
    had_vllm = "vllm" in sys.modules
    yield
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized(), "a unit test started Ray: it belongs in tests/integration"
    assert had_vllm or "vllm" not in sys.modules, "a unit test imported vLLM: it belongs in tests/integration"
