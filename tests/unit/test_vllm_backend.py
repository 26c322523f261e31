"""The vLLM backend's processor, as built for ray.data.llm (no engine started)."""

import pytest
import ray

from raydsbs.resolve import load_config
from raydsbs.teacher.backends import _vllm_processor


@pytest.fixture
def no_ray_left_running():
    """Building a processor starts Ray in this process; the tests after this one expect none."""
    running = ray.is_initialized()
    yield
    if not running:
        ray.shutdown()


def test_a_dying_engine_is_restarted_a_bounded_number_of_times(no_ray_left_running):
    """Ray Data's default restarts a dead actor and retries its batches forever: a deterministic engine crash
    would hang the run instead of ending it with the engine's error."""
    config = load_config(None, ["teacher.max_engine_restarts=3"]).teacher
    engine = _vllm_processor(config).get_stage_by_name("vLLMEngineStage")
    kwargs = engine.get_dataset_map_batches_kwargs(batch_size=config.batch_size, data_column="__data")
    assert (kwargs["max_restarts"], kwargs["max_task_retries"]) == (3, 3)
