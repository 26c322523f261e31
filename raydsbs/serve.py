"""A trained student behind Ray Serve: an HTTP JSON API that answers a label and, when asked, the rationale.

    POST /  {"input": "Tom has 2 cats and gets 1 more. How many cats?", "rationale": true}
    200     {"label": "3", "rationale": "Tom has 2 cats and gets 1 more, so 2 + 1 = 3."}
    400     {"error": "the body is not JSON: Expecting value (line 1, column 1)"}
    413     {"error": "the input has 25000 characters; at most 20000 (task.max_input_chars)"}

Each replica holds one copy of the student (``serve.replicas``, ``serve.cpus_per_replica`` or a GPU each) and
answers the requests that arrive together in one generate call per task (``@serve.batch``, up to
``serve.max_batch_size``), with the greedy decoding ``raydsbs predict`` uses: the same answers. T5 and causal
students alike. A bad request is answered with its reason before it reaches the batch, so it never disturbs
the others.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from raydsbs.config import ServeConfig
from raydsbs.student.inference import predict

logger = logging.getLogger(__name__)


class BadRequest(ValueError):
    """What is wrong with a request, and the HTTP status that says so."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


def parse_request(body: bytes, max_input_chars: int) -> tuple[str, bool]:
    """(input, whether the rationale is asked for) of a request body, or :class:`BadRequest` naming the problem."""
    try:
        request = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadRequest(400, f"the body is not JSON: {error}") from None
    if not isinstance(request, dict):
        raise BadRequest(400, f'the body is a JSON {type(request).__name__}; send an object: {{"input": "..."}}')
    unknown = sorted(set(request) - {"input", "rationale"})
    if unknown:
        raise BadRequest(400, f"unknown field(s) {', '.join(unknown)}; the fields are input and rationale")
    text, rationale = request.get("input"), request.get("rationale", False)
    if not isinstance(text, str):
        raise BadRequest(400, f'"input" must be text, not {type(text).__name__ if "input" in request else "missing"}')
    if not text.strip():
        raise BadRequest(400, '"input" is empty')
    if len(text) > max_input_chars:
        raise BadRequest(413, f"the input has {len(text)} characters; at most {max_input_chars} (task.max_input_chars)")
    if not isinstance(rationale, bool):
        raise BadRequest(400, f'"rationale" must be true or false, not {rationale!r}')
    return text, rationale


@serve.deployment
class StudentServer:
    """One replica: the student from ``folder`` (a local path or a storage URI)."""

    def __init__(self, folder: str, trust_remote_code: bool, settings: dict, max_input_chars: int):
        import torch

        from raydsbs.storage import local_copy
        from raydsbs.student.model import load_student

        self.settings = ServeConfig.model_validate(settings)
        self.max_input_chars = max_input_chars
        self.model, self.tokenizer, self.format = load_student(local_copy(folder), trust_remote_code)
        if self.settings.use_gpu:
            self.model.to("cuda")
        else:
            torch.set_num_threads(max(1, math.ceil(self.settings.cpus_per_replica)))
        self.answer.set_max_batch_size(self.settings.max_batch_size)
        self.answer.set_batch_wait_timeout_s(self.settings.batch_wait_timeout_s)

    async def __call__(self, request: Request) -> JSONResponse:
        try:
            text, rationale = parse_request(await request.body(), self.max_input_chars)
        except BadRequest as error:
            return JSONResponse({"error": str(error)}, status_code=error.status)
        return JSONResponse(await self.answer((text, rationale)))

    @serve.batch
    async def answer(self, requests: list[tuple[str, bool]]) -> list[dict]:
        """The answers of the requests that arrived together, in one generate call per task; the event loop
        goes on taking requests meanwhile (the next batch)."""
        return await asyncio.to_thread(self._generate, requests)

    def _generate(self, requests: list[tuple[str, bool]]) -> list[dict]:
        texts = [text for text, _ in requests]
        answers = [{"label": label} for label in self._predict(texts, "label")]
        asked = [number for number, (_, rationale) in enumerate(requests) if rationale]
        if asked:
            rationales = self._predict([texts[number] for number in asked], "rationale")
            for number, rationale in zip(asked, rationales, strict=True):
                answers[number]["rationale"] = rationale
        return answers

    def _predict(self, texts: list[str], task: str) -> list[str]:
        return predict(self.model, self.tokenizer, self.format, texts, task, self.settings.max_new_tokens, len(texts))


def serve_student(folder: str, trust_remote_code: bool, settings: ServeConfig, max_input_chars: int) -> str:
    """Start the API on the Ray cluster this process is connected to; its URL. It runs until Serve is shut down."""
    resources = {"num_gpus": 1} if settings.use_gpu else {"num_cpus": settings.cpus_per_replica}
    serve.start(http_options={"host": settings.host, "port": settings.port})
    app = StudentServer.options(num_replicas=settings.replicas, ray_actor_options=resources).bind(
        folder, trust_remote_code, settings.model_dump(), max_input_chars
    )
    serve.run(app, name="raydsbs-student", route_prefix="/")
    return f"http://{settings.host}:{settings.port}/"
