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

``serve.engine=vllm`` puts a causal student in vLLM's engine instead (vLLM has dropped encoder-decoder models:
not T5): the engine batches the requests as they come (continuous batching), reading the same prompt tokens and
decoding greedily as ``raydsbs predict`` does (fp32 on CPUs: the same answers).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import uuid

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from raydsbs.config import ConfigError, ServeConfig
from raydsbs.student.inference import predict, prompt_ids, until_eos

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


class StudentAPI:
    """The HTTP side of a replica: a request read, refused with its reason, or answered by ``respond``."""

    max_input_chars: int

    async def __call__(self, request: Request) -> JSONResponse:
        try:
            text, rationale = parse_request(await request.body(), self.max_input_chars)
        except BadRequest as error:
            return JSONResponse({"error": str(error)}, status_code=error.status)
        return JSONResponse(await self.respond(text, rationale))

    async def respond(self, text: str, rationale: bool) -> dict:
        """The label of ``text``, and its rationale when asked for."""
        raise NotImplementedError


@serve.deployment
class StudentServer(StudentAPI):
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

    async def respond(self, text: str, rationale: bool) -> dict:
        return await self.answer((text, rationale))

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


@serve.deployment
class VLLMStudentServer(StudentAPI):
    """One replica: a causal student from ``folder`` in vLLM's engine; the student's own tokenizer writes its
    prompts and reads its answers (the engine sees token ids only)."""

    def __init__(self, folder: str, trust_remote_code: bool, settings: dict, max_input_chars: int):
        from transformers import AutoTokenizer
        from vllm import AsyncEngineArgs, SamplingParams
        from vllm.v1.engine.async_llm import AsyncLLM

        from raydsbs.storage import local_copy
        from raydsbs.student.model import student_format_of

        self.settings = ServeConfig.model_validate(settings)
        self.max_input_chars = max_input_chars
        local = local_copy(folder)
        self.format = student_format_of(local)
        self.tokenizer = AutoTokenizer.from_pretrained(local, trust_remote_code=trust_remote_code)
        markers = max(len(self.format.marker_ids(self.tokenizer, task)) for task in ("label", "rationale"))
        arguments = AsyncEngineArgs(
            model=str(local),
            skip_tokenizer_init=True,
            max_model_len=self.format.max_input_tokens + markers + self.settings.max_new_tokens,
            enforce_eager=not self.settings.use_gpu,  # no CUDA graphs on CPUs; eager starts faster
            # CPUs: fp32, as `raydsbs predict` computes: the same answers (bf16 changed some of them)
            dtype="auto" if self.settings.use_gpu else "float32",
            trust_remote_code=trust_remote_code,
        )
        self.engine = AsyncLLM.from_engine_args(arguments)
        eos = self.tokenizer.eos_token_id
        self.sampling = SamplingParams(
            temperature=0.0, max_tokens=self.settings.max_new_tokens, stop_token_ids=[eos], detokenize=False
        )

    async def respond(self, text: str, rationale: bool) -> dict:
        tasks = ["label", "rationale"] if rationale else ["label"]
        answers = await asyncio.gather(*(self._generate(text, task) for task in tasks))
        return dict(zip(tasks, answers, strict=True))

    async def _generate(self, text: str, task: str) -> str:
        (ids,) = prompt_ids(self.tokenizer, self.format, [text], task)
        async for output in self.engine.generate({"prompt_token_ids": ids}, self.sampling, uuid.uuid4().hex):
            final = output
        generated = until_eos(list(final.outputs[0].token_ids), self.tokenizer.eos_token_id)
        return self.tokenizer.decode(generated, skip_special_tokens=True).strip()


def _check_serve_listens_where_asked(settings: ServeConfig) -> None:
    """Ray Serve already running on the cluster keeps its own address (serve.start ignores ours): refused, not
    served at an address other than the one asked for and printed."""
    from ray.serve.context import _get_global_client  # the running controller's HTTP settings: no public API

    running = _get_global_client().http_config
    if (running.host, running.port) != (settings.host, settings.port):
        raise ConfigError(
            "serve.host / serve.port",
            [
                f"Ray Serve already runs on this cluster at {running.host}:{running.port} (another `raydsbs serve`, "
                f"or one stopped without Ctrl-C): serve there with serve.host={running.host} "
                f"serve.port={running.port}, or stop it first with `serve shutdown -y`"
            ],
        )


def serve_student(folder: str, trust_remote_code: bool, settings: ServeConfig, max_input_chars: int) -> str:
    """Start the API on the Ray cluster this process is connected to; its URL. It runs until Serve is shut down."""
    resources = {"num_gpus": 1} if settings.use_gpu else {"num_cpus": settings.cpus_per_replica}
    server = StudentServer
    if settings.engine == "vllm":
        server = VLLMStudentServer
        resources["runtime_env"] = {"env_vars": {"VLLM_CPU_KVCACHE_SPACE": str(settings.kv_cache_gib)}}
    serve.start(http_options={"host": settings.host, "port": settings.port})
    _check_serve_listens_where_asked(settings)
    app = server.options(num_replicas=settings.replicas, ray_actor_options=resources).bind(
        folder, trust_remote_code, settings.model_dump(), max_input_chars
    )
    serve.run(app, name="raydsbs-student", route_prefix="/")
    return f"http://{settings.host}:{settings.port}/"
