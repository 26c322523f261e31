"""The OpenAI-compatible HTTP backend against a local stand-in server (no hosted API can be
reached here): retries of 429/5xx, a 400 as a row error, the concurrency limit, the key from the env."""

from __future__ import annotations

import email.utils
import json
import threading
import time
from datetime import UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from raydsbs.config import TeacherConfig
from raydsbs.teacher.backends import OpenAIClient, retry_after_seconds


class StandInServer(ThreadingHTTPServer):
    """Answers /v1/completions; fails each prompt's first attempt with 503 (or 429), refuses 'TOO LONG' with 400."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.attempts: dict[str, int] = {}
        self.in_flight = self.max_in_flight = 0
        self.auth_headers: set[str] = set()
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _reply(self, status: int, body: dict, headers: dict | None = None):
        data = json.dumps(body).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        server: StandInServer = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["prompt"]
        with server.lock:
            server.auth_headers.add(self.headers.get("Authorization", ""))
            server.attempts[prompt] = server.attempts.get(prompt, 0) + 1
            attempt = server.attempts[prompt]
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
        time.sleep(0.05)
        with server.lock:
            server.in_flight -= 1
        fault = next((name for name in FAULTS if name in prompt), None)
        if fault and (attempt == 1 or fault in ("NOT UTF8", "CONTEXT")):
            return FAULTS[fault](self)
        if "TOO LONG" in prompt:
            # Like some proxies, it echoes the request's headers in its error: the key among them.
            return self._reply(
                400, {"error": {"message": "prompt exceeds the context", "request_headers": dict(self.headers)}}
            )
        if attempt == 1:
            status = 429 if prompt.endswith("3") else 503
            return self._reply(status, {"error": {"message": "busy"}}, {"Retry-After": "0"})
        text = f" Reasoning for {prompt}. So the answer is {len(prompt)}."
        usage = {"completion_tokens": 7, "prompt_tokens": len(prompt.split())}
        return self._reply(200, {"choices": [{"text": text}], "usage": usage})


def _raw(handler: _Handler, status: int, data: bytes, headers: dict, length: int | None = None):
    handler.send_response(status)
    for key, value in headers.items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(data) if length is None else length))
    handler.end_headers()
    handler.wfile.write(data)
    handler.wfile.flush()
    handler.close_connection = True


# Faults of real servers and proxies, each on the prompt that names it (first attempt only, or always).
FAULTS = {
    "HTTP DATE": lambda h: _raw(h, 503, b"{}", {"Retry-After": email.utils.formatdate(time.time() + 1, usegmt=True)}),
    "LONG WAIT": lambda h: _raw(h, 429, b"{}", {"Retry-After": "3600"}),
    "CUT SHORT": lambda h: _raw(h, 200, b'{"choices": [{"te', {"Content-Type": "application/json"}, length=400),
    "NOT UTF8": lambda h: _raw(
        h, 200, b'{"choices": [{"text": "caf\xe9 \xff"}]}', {"Content-Type": "application/json"}
    ),
    "CONTEXT": lambda h: _raw(
        h,
        400,
        json.dumps(
            {
                "error": {
                    "message": "This model's maximum context length is 2048 tokens. However, you requested 2301 tokens"
                }
            }
        ).encode(),
        {},
    ),
}


@pytest.fixture
def server():
    srv = StandInServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()


def _batch(prompts: list[str]) -> dict[str, np.ndarray]:
    n = len(prompts)
    return {
        "request_id": np.array([f"r{i}#0" for i in range(n)], dtype=object),
        "id": np.array([f"r{i}" for i in range(n)], dtype=object),
        "sample": np.zeros(n, dtype=np.int64),
        "seed": np.arange(n),
        "question": np.array(prompts, dtype=object),
        "question_key": np.arange(n),
        "split": np.array(["train"] * n, dtype=object),
        "gold": np.array(["1"] * n, dtype=object),
        "prompt": np.array(prompts, dtype=object),
    }


def test_retries_errors_concurrency_and_key(server, monkeypatch):
    monkeypatch.setenv("STAND_IN_KEY", "sk-test-123")
    config = TeacherConfig(
        backend="openai",
        endpoint=f"http://127.0.0.1:{server.server_port}/v1",
        model="m",
        api_key_env="STAND_IN_KEY",
        max_concurrent_requests=3,
        max_retries=2,
    )
    prompts = [f"prompt {i}" for i in range(10)] + ["TOO LONG prompt"]
    out = OpenAIClient(config)(_batch(prompts))
    assert list(out["error"][:10]) == [""] * 10  # each failed once (503 or 429) and succeeded on retry
    assert out["completion"][0] == " Reasoning for prompt 0. So the answer is 8."
    assert list(out["generated_tokens"][:10]) == [7] * 10
    assert list(out["prompt_tokens"]) == [2] * 10 + [0]  # as the API's usage counts them; none for a refusal
    assert out["error"][10].startswith("prompt_too_long: http 400") and "exceeds the context" in out["error"][10]
    assert "sk-test-123" not in out["error"][10] and "[key redacted]" in out["error"][10]  # errors go to rejects
    assert server.attempts["TOO LONG prompt"] == 1  # a 400 is not retried
    assert 1 < server.max_in_flight <= 3
    assert server.auth_headers == {"Bearer sk-test-123"}
    assert list(out["request_id"]) == [f"r{i}#0" for i in range(11)]


def test_gives_up_after_the_retries_with_the_reason(monkeypatch):
    config = TeacherConfig(backend="openai", endpoint="http://127.0.0.1:9/v1", model="m", max_retries=1)
    monkeypatch.setattr("raydsbs.teacher.backends.time.sleep", lambda seconds: None)
    out = OpenAIClient(config)(_batch(["q"]))
    assert "request failed" in out["error"][0] and "gave up after 2 attempts" in out["error"][0]


def test_each_fault_of_a_server_becomes_a_retry_or_a_rejected_row(server):
    config = TeacherConfig(
        backend="openai",
        endpoint=f"http://127.0.0.1:{server.server_port}/v1",
        model="m",
        max_retries=2,
        max_retry_wait_s=1.5,
    )
    started = time.monotonic()
    out = OpenAIClient(config)(_batch(["HTTP DATE 1", "LONG WAIT 2", "CUT SHORT 3", "NOT UTF8 4", "CONTEXT 5"]))
    errors = dict(zip(["date", "wait", "cut", "utf8", "context"], out["error"], strict=True))
    assert (errors["date"], errors["wait"], errors["cut"]) == ("", "", "")  # retried, then answered
    assert out["completion"][0].startswith(" Reasoning for HTTP DATE 1")
    assert time.monotonic() - started < 10  # Retry-After: 3600 was cut to teacher.max_retry_wait_s
    assert errors["utf8"].startswith("unexpected reply") and server.attempts["NOT UTF8 4"] == 1
    assert errors["context"].startswith("prompt_too_long: http 400") and server.attempts["CONTEXT 5"] == 1


def test_retry_after_is_read_as_seconds_or_an_http_date():
    from datetime import datetime

    now = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds("Tue, 01 Dec 2026 12:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Tue, 01 Dec 2026 11:00:00 GMT", now) == 0.0  # in the past
    assert retry_after_seconds("soon", now) == retry_after_seconds(None, now) == 0.0


def test_a_prompt_the_server_refuses_as_too_long_is_rejected_as_prompt_too_long():
    from raydsbs.resolve import load_config
    from raydsbs.teacher.pipeline import ParseSamples

    parse = ParseSamples(load_config(None, ["teacher.backend=openai", "teacher.endpoint=http://127.0.0.1:9/v1"]))
    batch = _batch(["q", "q"])
    batch.update(
        completion=np.array(["", ""], dtype=object),
        generated_tokens=np.zeros(2, dtype=np.int64),
        prompt_tokens=np.zeros(2, dtype=np.int64),
        error=np.array(["prompt_too_long: http 400: maximum context length", "http 500: busy"], dtype=object),
    )
    assert list(parse(batch)["reason"]) == ["prompt_too_long", "inference_error"]
