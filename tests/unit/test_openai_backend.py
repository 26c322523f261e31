"""The OpenAI-compatible HTTP backend against a local stand-in server (no hosted API can be
reached here): retries of 429/5xx, a 400 as a row error, the concurrency limit, the key from the env."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from raydsbs.config import TeacherConfig
from raydsbs.teacher.backends import OpenAIClient


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
        if "TOO LONG" in prompt:
            # Like some proxies, it echoes the request's headers in its error: the key among them.
            return self._reply(400, {"error": {"message": "prompt exceeds the context",
                                               "request_headers": dict(self.headers)}})
        if attempt == 1:
            status = 429 if prompt.endswith("3") else 503
            return self._reply(status, {"error": {"message": "busy"}}, {"Retry-After": "0"})
        text = f" Reasoning for {prompt}. So the answer is {len(prompt)}."
        return self._reply(200, {"choices": [{"text": text}], "usage": {"completion_tokens": 7}})


@pytest.fixture
def server():
    srv = StandInServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()


def _batch(prompts: list[str]) -> dict[str, np.ndarray]:
    n = len(prompts)
    return {"request_id": np.array([f"r{i}#0" for i in range(n)], dtype=object), "id": np.array([f"r{i}" for i in range(n)], dtype=object),
            "sample": np.zeros(n, dtype=np.int64), "seed": np.arange(n), "question": np.array(prompts, dtype=object),
            "question_key": np.arange(n), "split": np.array(["train"] * n, dtype=object),
            "gold": np.array(["1"] * n, dtype=object), "prompt": np.array(prompts, dtype=object)}


def test_retries_errors_concurrency_and_key(server, monkeypatch):
    monkeypatch.setenv("STAND_IN_KEY", "sk-test-123")
    config = TeacherConfig(backend="openai", endpoint=f"http://127.0.0.1:{server.server_port}/v1", model="m",
                           api_key_env="STAND_IN_KEY", max_concurrent_requests=3, max_retries=2)
    prompts = [f"prompt {i}" for i in range(10)] + ["TOO LONG prompt"]
    out = OpenAIClient(config)(_batch(prompts))
    assert list(out["error"][:10]) == [""] * 10  # each failed once (503 or 429) and succeeded on retry
    assert out["completion"][0] == " Reasoning for prompt 0. So the answer is 8."
    assert list(out["generated_tokens"][:10]) == [7] * 10
    assert out["error"][10].startswith("http 400") and "exceeds the context" in out["error"][10]
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
