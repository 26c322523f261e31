"""Teacher throughput: the raydsbs teacher stage against bare vLLM and a batch-1 transformers loop.

The same few-shot prompts (the embedded two-step arith2 task), the same model (the bundled
SmolLM2-135M-Instruct) and the same generation limits (greedy, max_new_tokens,
stop at the next "Q:") go through

  (a) the raydsbs teacher stage (Ray Data -> ray.data.llm -> vLLM, checkpointed writes, parse),
  (b) bare vLLM ``LLM.generate`` in one process,
  (c) a transformers ``generate`` loop at batch size 1, as the paper's scripts would call a model.

Throughput is generated tokens over the wall time from the first prompt submitted to the
last completion written, engine (or model) start included in a, b and c. Each runs in its
own process, one after another. A second part (--scale) runs (a) at 1k, 10k and 100k rows
with short generations and reports throughput and the driver's peak memory.

    .venv/bin/python benchmarks/teacher_throughput.py                  # 512 prompts, c on 64
    .venv/bin/python benchmarks/teacher_throughput.py --scale 1000 10000            # vLLM, short generations
    .venv/bin/python benchmarks/teacher_throughput.py --scale 1000 10000 100000 --scale-backend replay
    BENCH_TEACHER_OVERRIDES="teacher.rows_per_checkpoint=2048" .venv/bin/python benchmarks/teacher_throughput.py \
        --scale 1000 10000 100000 --scale-backend replay  # overrides for every run (the cluster jobs' block size)

Writes benchmarks/results/teacher_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "teacher_throughput.json"
TASK = "arith2"  # the prompts the recorded figures were measured on (two-step problems, four shots)
sys.path.insert(0, str(ROOT))


def _config(out: str, rows: int, max_new_tokens: int, num_shots: int):
    from raydsbs.resolve import load_config

    return load_config(
        None,
        [  # the defaults: the bundled teacher on vLLM, answering the train rows only
            f"output_dir={out}",
            "tag=bench",
            f"task.name={TASK}",
            "teacher.answer_heldout=false",
            f"task.num_train={rows}",
            "task.num_val=1",
            "task.num_test=1",
            f"teacher.max_new_tokens={max_new_tokens}",
            f"teacher.num_shots={num_shots}",
            "teacher.min_rationale_words=0",
            *os.environ.get("BENCH_TEACHER_OVERRIDES", "").split(),
        ],
    )


def _prompts(rows: int, max_new_tokens: int, num_shots: int) -> list[str]:
    """The prompts the teacher stage sends, in corpus order."""
    from raydsbs.tasks import get_task
    from raydsbs.teacher.prompts import build_prompt

    config = _config("/tmp/unused", rows, max_new_tokens, num_shots)
    task = get_task(TASK)
    return [build_prompt(task, e.question, num_shots) for e in task.load_splits(config.task)["train"]]


def run_raydsbs(rows: int, max_new_tokens: int, num_shots: int, replay: bool = False) -> dict:
    import ray

    from raydsbs.resolve import with_overrides
    from raydsbs.rundir import open_run
    from raydsbs.teacher.pipeline import generate

    with tempfile.TemporaryDirectory() as out:
        config = _config(out, rows, max_new_tokens, num_shots)
        if replay:  # a stand-in teacher: the pipeline at scale without the engine's cost
            config = with_overrides(
                config, {"teacher.backend": "replay", "teacher.replay_file": f"{out}/replay.parquet"}
            )
        # The corpus is written by a process of its own: the driver's peak memory is the stage's.
        setup = multiprocessing.get_context("spawn").Process(target=_prepare, args=(config, replay))
        setup.start()
        setup.join()
        if setup.exitcode:
            raise RuntimeError(f"writing the corpus of {rows} rows failed")
        run = open_run(config)
        ray.init(
            address="local", num_cpus=4, include_dashboard=False, log_to_driver=bool(os.environ.get("BENCH_VERBOSE"))
        )
        started = time.perf_counter()
        summary = generate(config, run)  # requests, engine start, generation, parse, writes, selection
        seconds = time.perf_counter() - started
        ray.shutdown()
    return {
        "rows": summary["rows"],
        "generated_tokens": summary["generated_tokens"],
        "seconds": seconds,
        "driver_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _prepare(config, replay: bool) -> None:
    from raydsbs.data.corpus import write_corpus
    from raydsbs.rundir import open_run

    run = open_run(config)
    write_corpus(config.task, run, config.ray)
    if replay:
        _write_stand_in_completions(run, config.teacher.replay_file)


def _write_stand_in_completions(run, path: str) -> None:
    """Completions in the teacher's style for every train row ("... So the answer is <gold>.")."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    train = pq.read_table(run.corpus_file("train"), columns=["id", "gold"])
    completion = pc.binary_join_element_wise(
        "Counting step by step gives ", train["gold"], ". So the answer is ", train["gold"], ".", ""
    )
    pq.write_table(train.select(["id"]).append_column("completion", completion), path)


def run_raydsbs_replay(rows: int, max_new_tokens: int, num_shots: int) -> dict:
    return run_raydsbs(rows, max_new_tokens, num_shots, replay=True)


def run_vllm(rows: int, max_new_tokens: int, num_shots: int) -> dict:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    from raydsbs.teacher.backends import STOP
    from raydsbs.teacher.model_cache import resolve_model

    prompts = _prompts(rows, max_new_tokens, num_shots)
    model = resolve_model("bundled:smollm2-135m-instruct")
    started = time.perf_counter()  # importing vLLM is part of starting it, as in the teacher stage's actor
    from vllm import LLM, SamplingParams

    teacher = _config("/tmp/unused", rows, max_new_tokens, num_shots).teacher  # the same engine settings as (a)
    llm = LLM(
        model=model,
        max_model_len=teacher.max_model_len,
        max_num_batched_tokens=teacher.max_num_batched_tokens,
        enforce_eager=True,
        dtype="bfloat16",
    )
    outputs = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop=STOP))
    seconds = time.perf_counter() - started
    return {
        "rows": len(prompts),
        "generated_tokens": sum(len(o.outputs[0].token_ids) for o in outputs),
        "seconds": seconds,
    }


def run_transformers_loop(rows: int, max_new_tokens: int, num_shots: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from raydsbs.teacher.backends import STOP
    from raydsbs.teacher.model_cache import resolve_model

    prompts = _prompts(rows, max_new_tokens, num_shots)
    path = resolve_model("bundled:smollm2-135m-instruct")
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tokens = 0
    with torch.inference_mode():
        for prompt in prompts:
            inputs = tokenizer(prompt, return_tensors="pt")
            output = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                stop_strings=STOP,
                tokenizer=tokenizer,
                pad_token_id=tokenizer.eos_token_id,
            )
            tokens += output.shape[1] - inputs["input_ids"].shape[1]
    seconds = time.perf_counter() - started
    return {"rows": len(prompts), "generated_tokens": tokens, "seconds": seconds, "dtype": str(model.dtype)}


RUNNERS = {
    "raydsbs": run_raydsbs,
    "raydsbs_replay": run_raydsbs_replay,
    "vllm": run_vllm,
    "transformers_loop": run_transformers_loop,
}


def in_subprocess(which: str, rows: int, max_new_tokens: int, num_shots: int) -> dict:
    """Each measurement in a fresh process: no warm caches or engines shared between them."""
    with tempfile.NamedTemporaryFile(suffix=".json") as result:
        command = [
            sys.executable,
            __file__,
            "--one",
            which,
            str(rows),
            str(max_new_tokens),
            str(num_shots),
            result.name,
        ]
        subprocess.run(
            command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL if not os.environ.get("BENCH_VERBOSE") else None
        )
        measured = json.loads(Path(result.name).read_text())
    measured["tokens_per_s"] = round(measured["generated_tokens"] / measured["seconds"], 1)
    measured["seconds"] = round(measured["seconds"], 1)
    print(
        f"{which:>18}: {measured['rows']:>6} prompts, {measured['generated_tokens']:>7} tokens in "
        f"{measured['seconds']:>7.1f} s = {measured['tokens_per_s']:>7.1f} generated tokens/s",
        flush=True,
    )
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=512)
    parser.add_argument("--loop-prompts", type=int, default=64, help="prompts for (c), a prefix of the same prompts")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--num-shots", type=int, default=4)
    parser.add_argument("--scale", type=int, nargs="*", default=[], help="corpus sizes for the scaling part")
    parser.add_argument("--scale-max-new-tokens", type=int, default=8)
    parser.add_argument(
        "--scale-backend",
        choices=["vllm", "replay"],
        default="vllm",
        help="replay: a stand-in teacher (synthetic completions) to measure the pipeline alone at scale",
    )
    parser.add_argument("--one", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        which, rows, max_new, shots, out = args.one[0], *map(int, args.one[1:4]), args.one[4]
        Path(out).write_text(json.dumps(RUNNERS[which](rows, max_new, shots)))
        return

    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if args.prompts and not args.scale:
        a = in_subprocess("raydsbs", args.prompts, args.max_new_tokens, args.num_shots)
        b = in_subprocess("vllm", args.prompts, args.max_new_tokens, args.num_shots)
        c = in_subprocess("transformers_loop", args.loop_prompts, args.max_new_tokens, args.num_shots)
        results.update(
            prompts=args.prompts,
            loop_prompts=args.loop_prompts,
            max_new_tokens=args.max_new_tokens,
            num_shots=args.num_shots,
            model="bundled:smollm2-135m-instruct (SmolLM2-135M-Instruct, bf16)",
            raydsbs=a,
            vllm=b,
            transformers_loop=c,
            ratio_vs_vllm=round(a["tokens_per_s"] / b["tokens_per_s"], 3),
            ratio_vs_transformers_loop=round(a["tokens_per_s"] / c["tokens_per_s"], 2),
        )
        print(f"ratio a/b (raydsbs / bare vLLM) = {results['ratio_vs_vllm']}   (target >= 0.9)")
        print(f"ratio a/c (raydsbs / transformers loop) = {results['ratio_vs_transformers_loop']}   (target >= 8)")
    if args.scale:
        scale = []
        which = "raydsbs" if args.scale_backend == "vllm" else "raydsbs_replay"
        for rows in args.scale:
            measured = in_subprocess(which, rows, args.scale_max_new_tokens, 0)
            measured["rows_per_s"] = round(measured["rows"] / measured["seconds"], 1)
            print(
                f"{'':>18}  {rows} rows: {measured['rows_per_s']} rows/s, driver peak RSS "
                f"{measured['driver_peak_rss_mib']:.0f} MiB",
                flush=True,
            )
            scale.append(measured)
        overrides = os.environ.get("BENCH_TEACHER_OVERRIDES", "").split()
        key = "_".join([f"scale_{args.scale_backend}", *(o.split(".")[-1].replace("=", "_") for o in overrides)])
        results[key] = {
            "backend": args.scale_backend,
            "max_new_tokens": args.scale_max_new_tokens,
            "num_shots": 0,
            "overrides": overrides,
            "runs": scale,
        }
    results["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}"
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
