"""Student throughput: the raydsbs trainer against the paper's scheme as a plain transformers Trainer.

The same T5 (built from config, same seed), the same data (the paper's released
CommonsenseQA teacher rationales, replayed), the same batch size, optimizer and
number of samples, on the same machine, one process each:

  (a) raydsbs: one forward per step through MultiTaskModel; variants add the
      levers one at a time: length-bucketed batches, the encoder run once for
      both tasks (student.task_marker=output), bf16 autocast;
  (b) the paper's scheme: a Seq2SeqTrainer whose compute_loss runs two forward
      passes per step ("predict: x" and "explain: x"), each task padded on its
      own by DataCollatorForSeq2Seq, loss α·label + (1−α)·rationale.

(b) runs again with bf16 autocast, so the bf16 variant of (a) has a like-for-like
baseline. With --causal the student is the bundled SmolLM2-135M (pretrained,
decoder-only) and the levers are length buckets, both tasks in one packed
sequence (student.task_marker=output), bf16 autocast, and LoRA (which changes
what is learned, so it is reported beside the headline, not in it); (b) is a
transformers Trainer running the paper's two passes on the same rows. Samples/s counts training
examples (each has a label and a rationale target); each measurement runs in a fresh process, in
--repeats rounds over all of them, and the best round counts (the machine's slow spells hit each
alike).
The loss comparison uses held-out CQA rows: each trained model's label and
rationale losses, after the same number of samples.

    .venv/bin/python benchmarks/student_throughput.py                    # a vs b, writes the json
    .venv/bin/python benchmarks/student_throughput.py --parallelism      # DDP, ZeRO 1/2/3, ZeRO-3 + offload (Ray Train)
    .venv/bin/python benchmarks/student_throughput.py --causal           # SmolLM2-135M: student_throughput_causal.json
    python benchmarks/student_throughput.py --device cuda --preset t5-base-scratch --zero-stage 2 \\
        --precision bf16 --samples 20000 --batch-size 32 --repeats 1 \
        --only raydsbs_buckets_encoder_once reference                    # a GPU machine, no Ray needed

Writes benchmarks/results/student_throughput.json (the GPU run: student_throughput_gpu.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DSS = ROOT.parent / "shared" / "data" / "dss"
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from raydsbs.config import Config, to_yaml  # noqa: E402
from raydsbs.resolve import load_config, parse_override  # noqa: E402
from raydsbs.rundir import RunDir  # noqa: E402

ALPHA = 0.5  # the paper's α; λ = (1 − α)/α = 1 in raydsbs
VARIANTS = {  # (a) and the levers it adds, one at a time
    "raydsbs_paper_layout": ["student.task_marker=input", "train.length_bucketing=false"],
    "raydsbs_buckets": ["student.task_marker=input", "train.length_bucketing=true"],
    "raydsbs_buckets_encoder_once": ["student.task_marker=output", "train.length_bucketing=true"],
    "raydsbs_buckets_encoder_once_bf16": [
        "student.task_marker=output",
        "train.length_bucketing=true",
        "train.precision=bf16",
    ],
}
REFERENCES = {"reference": [], "reference_bf16": ["train.precision=bf16"]}  # (b), and (b) given bf16 too
HEADLINE = "raydsbs_buckets_encoder_once"
CAUSAL_VARIANTS = {  # a pretrained decoder-only student: the prompt once, in bf16, and LoRA beside
    "raydsbs_paper_layout": ["student.task_marker=input", "train.length_bucketing=false"],
    "raydsbs_buckets": ["student.task_marker=input", "train.length_bucketing=true"],
    "raydsbs_buckets_packed": ["student.task_marker=output", "train.length_bucketing=true"],
    "raydsbs_buckets_packed_bf16": [
        "student.task_marker=output",
        "train.length_bucketing=true",
        "train.precision=bf16",
    ],
    "raydsbs_buckets_packed_bf16_lora": [
        "student.task_marker=output",
        "train.length_bucketing=true",
        "train.precision=bf16",
        "student.lora={rank: 16}",
    ],
}
CAUSAL_HEADLINE = "raydsbs_buckets_packed_bf16"  # every lever that keeps the math: what `precision=auto` runs here


def prepare_run(out: Path, args) -> tuple[Config, RunDir]:
    """A run directory with CQA's corpus, the replayed teacher rationales and a trained tokenizer (no Ray)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from raydsbs.data.corpus import write_corpus
    from raydsbs.data.released import completions_by_id
    from raydsbs.student.launcher import prepare_tokenizer
    from raydsbs.tasks import get_task

    config = load_config(
        None,
        [
            f"output_dir={out}",
            "tag=bench",
            "task.name=cqa",
            f"task.data_dir={DSS / 'cqa'}",
            f"task.num_train={args.samples}",
            f"task.num_val={args.held_out}",
            "task.num_test=1",
            f"student.preset={args.preset}",
            "student.vocab_size=4000",
            "student.max_rationale_tokens=128",
            f"train.batch_size={args.batch_size}",
            f"train.learning_rate={args.learning_rate}",
            f"train.zero_stage={args.zero_stage}",
            f"train.precision={args.precision}",
            f"train.use_gpu={args.device == 'cuda'}",
            # ours is the reference's loss times 1/α: clip at 1/α so both clip the same gradients
            f"train.max_grad_norm={1 / ALPHA}",
            f"train.cpus_per_worker={os.cpu_count()}",
        ],
    )
    (out / "config.yaml").write_text(to_yaml(config))
    run = RunDir(out / "run")
    write_corpus(config.task, run, config.ray)
    task, completions = get_task("cqa"), completions_by_id(DSS / "cqa", "cqa")
    rows = []
    for row in pq.read_table(run.corpus_file("train")).to_pylist():
        parsed = task.parse_completion(completions[row["id"]])
        if parsed.reason is None:
            rows.append({**row, "rationale": parsed.rationale, "teacher_label": parsed.label})
    run.teacher.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), run.distill_file)
    prepare_tokenizer(config, run)
    return config, run


def _real_tokens(batch: dict) -> tuple[int, int]:
    """(encoder tokens, decoder tokens) of a seq2seq batch, padding not counted."""
    encoder = sum(int(rows["attention_mask"].sum()) for name, rows in batch.items() if "attention_mask" in rows)
    decoder = sum(int((rows["labels"] != -100).sum()) for name, rows in batch.items() if "labels" in rows)
    return encoder, decoder


def held_out_losses(model, fmt, config: Config, run: RunDir) -> dict:
    """Mean label and rationale loss of ``model`` on held-out CQA rows with teacher rationales, in its own format."""
    import pyarrow.parquet as pq

    from raydsbs.data.released import completions_by_id
    from raydsbs.student.batching import TrainingExample, collate, encode
    from raydsbs.student.multitask import MultiTaskModel
    from raydsbs.student.tokenizer import load_tokenizer
    from raydsbs.tasks import get_task

    task, completions = get_task("cqa"), completions_by_id(DSS / "cqa", "cqa")
    examples = []
    for row in pq.read_table(run.corpus_file("val")).to_pylist():
        parsed = task.parse_completion(completions[row["id"]])
        if parsed.reason is None:
            examples.append(TrainingExample(row["question"], row["gold"], parsed.rationale))
    tokenizer = load_tokenizer(config.student, run.tokenizer)
    encoded = encode(examples, tokenizer, config.student, fmt)
    wrapper, sums = MultiTaskModel(model).eval(), [0.0, 0.0]
    with torch.no_grad():
        for start in range(0, len(encoded), 32):
            batch = collate(
                encoded[start : start + 32],
                fmt,
                tokenizer.pad_token_id,
                getattr(model.config, "decoder_start_token_id", None),
            )
            batch = {k: {n: t.to(model.device) for n, t in v.items()} for k, v in batch.items()}
            label, rationale = wrapper(batch)
            count = len(encoded[start : start + 32])
            sums = [sums[0] + label.item() * count, sums[1] + rationale.item() * count]
    return {
        "held_out_label_loss": round(sums[0] / len(encoded), 4),
        "held_out_rationale_loss": round(sums[1] / len(encoded), 4),
        "held_out_rows": len(encoded),
    }


def flops_per_token(model) -> tuple[int, int]:
    """Training FLOPs per encoder token and per decoder token of a seq2seq student: 6 × the parameters each
    passes through."""

    def count(parameters) -> int:  # a ZeRO-3 parameter is a stub whose full size is ds_numel
        return sum(getattr(p, "ds_numel", p.numel()) for p in parameters)

    encoder, total = count(model.get_encoder().parameters()), count(model.parameters())
    return 6 * encoder, 6 * (total - encoder)


def run_raydsbs(config: Config, run: RunDir, args) -> dict:
    """(a): the raydsbs Trainer and Learner, one process (no Ray), over ``args.samples`` examples."""
    from raydsbs.student.train_loop import Trainer

    device = torch.device(args.device)
    trainer = Trainer(config, run, rank=0, world=1, distributed=False, device=device)
    learner, examples = trainer.learner, trainer.train_set
    steps = -(-args.samples // config.train.batch_size)
    batches, epoch = [], 0
    while len(batches) < steps:
        batches += trainer.batches(examples, seed=epoch)
        epoch += 1
    seq2seq = trainer.format.kind == "seq2seq"
    tokens = [0, 0]
    started = time.perf_counter()
    for indices in batches[:steps]:
        batch = trainer.collate(examples, indices)
        if seq2seq:
            encoder, decoder = _real_tokens(batch)
            tokens = [tokens[0] + encoder, tokens[1] + decoder]
        learner.micro_step(batch, boundary=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    result = {
        "samples": steps * config.train.batch_size,
        "seconds": round(seconds, 1),
        "steps": steps,
        **held_out_losses(learner.module, trainer.format, config, run),
    }
    if seq2seq:
        per_encoder, per_decoder = flops_per_token(learner.module)
        result["tokens"] = sum(tokens)
        result["model_tflops_per_s"] = round((per_encoder * tokens[0] + per_decoder * tokens[1]) / seconds / 1e12, 3)
    return result


def run_reference(config: Config, run: RunDir, args) -> dict:
    """(b): the paper's two-pass scheme as a plain transformers Seq2SeqTrainer."""
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

    from raydsbs.student.batching import MARKERS, StudentFormat
    from raydsbs.student.model import build_student, student_kind
    from raydsbs.student.tokenized import training_data
    from raydsbs.student.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(config.student, run.tokenizer)
    kind = student_kind(config.student)
    fmt = StudentFormat(kind, "input", config.student.max_input_tokens)  # "predict: x" / "explain: x"
    train, _ = training_data(config, run, tokenizer, fmt)

    def feature(row) -> dict:  # a causal row is the prompt and its target, scored on the target only
        if kind == "seq2seq":
            return {"input_ids": row.source, "labels": row.target}
        return {"input_ids": row.source + row.target, "labels": [-100] * len(row.source) + row.target}

    features = [{"label": feature(e.label), "rationale": feature(e.rationale)} for e in train if e.rationale]
    torch.manual_seed(config.train.seed)
    model = build_student(config.student, tokenizer)
    pad_each = DataCollatorForSeq2Seq(tokenizer, model=model, padding="longest")

    def collate_two_tasks(rows: list[dict]) -> dict:
        return {task: pad_each([row[task] for row in rows]) for task in MARKERS}

    class TwoPassTrainer(Seq2SeqTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            label = model(**inputs["label"]).loss
            rationale = model(**inputs["rationale"]).loss
            return ALPHA * label + (1 - ALPHA) * rationale

    steps = -(-args.samples // config.train.batch_size)
    with tempfile.TemporaryDirectory() as out:
        training_args = Seq2SeqTrainingArguments(
            output_dir=out,
            per_device_train_batch_size=config.train.batch_size,
            max_steps=steps,
            learning_rate=config.train.learning_rate,
            lr_scheduler_type="constant",
            weight_decay=0.0,
            max_grad_norm=1.0,
            seed=config.train.seed,
            report_to=[],
            save_strategy="no",
            logging_steps=10**9,
            remove_unused_columns=False,
            dataloader_num_workers=0,
            use_cpu=args.device == "cpu",
            bf16=config.train.precision == "bf16",
            disable_tqdm=True,
        )
        trainer = TwoPassTrainer(
            model=model, args=training_args, train_dataset=features, data_collator=collate_two_tasks
        )
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    return {
        "samples": steps * config.train.batch_size,
        "seconds": round(seconds, 1),
        "steps": steps,
        **held_out_losses(model, fmt, config, run),
    }


def parallelism_table(config: Config, run: RunDir, args) -> list[dict]:
    """Step time and peak memory per worker of DDP, ZeRO 1/2/3, and ZeRO-3 with optimizer and parameter offload:
    Ray Train, 2 workers, this machine."""
    import ray
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    def measure(loop_config: dict) -> None:
        import ray.train

        from raydsbs.resolve import with_overrides
        from raydsbs.student.train_loop import Trainer

        context = ray.train.get_context()
        cfg = with_overrides(Config.model_validate(loop_config["config"]), loop_config["overrides"])
        trainer = Trainer(
            cfg,
            RunDir(loop_config["run"]),
            context.get_world_rank(),
            context.get_world_size(),
            distributed=True,
            device=torch.device("cpu"),
        )
        batches = trainer.batches(trainer.train_set, seed=0)[: loop_config["steps"] + 1]
        trainer.learner.micro_step(trainer.collate(trainer.train_set, batches[0]), boundary=True)  # warm-up
        started = time.perf_counter()
        for indices in batches[1:]:
            trainer.learner.micro_step(trainer.collate(trainer.train_set, indices), boundary=True)
        seconds = (time.perf_counter() - started) / (len(batches) - 1)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if context.get_world_rank() == 0:  # Result.metrics of a report without a checkpoint can be None
            Path(loop_config["result"]).write_text(json.dumps({"step_s": seconds, "peak_rss_mib": rss}))

    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    rows = []
    offload = {"train.offload_optimizer": True, "train.offload_parameters": True}  # DeepSpeed's CPU Adam
    for name, stage, extra in [
        ("DDP", 0, {}),
        ("ZeRO-1", 1, {}),
        ("ZeRO-2", 2, {}),
        ("ZeRO-3", 3, {}),
        ("ZeRO-3 + offload", 3, offload),
    ]:
        result = TorchTrainer(
            measure,
            train_loop_config={
                "config": config.model_dump(mode="json"),
                "overrides": {"train.zero_stage": stage, "train.cpus_per_worker": 0.9, **extra},
                "run": str(run.root),
                "steps": args.parallel_steps,
                "result": str(run.root / "parallel.json"),
            },
            scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.9}),
        ).fit()
        if result.error:
            raise result.error
        measured = json.loads((run.root / "parallel.json").read_text())
        row = {
            "strategy": name,
            "workers": 2,
            "step_s": round(measured["step_s"], 2),
            "peak_rss_mib_rank0": round(measured["peak_rss_mib"]),
        }
        print(f"{name:>16}: {row['step_s']:.2f} s/step, rank-0 peak RSS {row['peak_rss_mib_rank0']} MiB", flush=True)
        rows.append(row)
    ray.shutdown()
    return rows


def measure_one(name: str, out: Path, args) -> dict:
    """One measurement, in this process."""
    from raydsbs.resolve import with_overrides

    config, run = load_config(out / "config.yaml"), RunDir(out / "run")
    overrides = {".".join(keys): value for keys, value in map(parse_override, _measurements(args)[name])}
    runner = run_reference if name in REFERENCES else run_raydsbs
    result = runner(with_overrides(config, overrides), run, args)
    result["samples_per_s"] = round(result["samples"] / result["seconds"], 2)
    result["device"] = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    return result


def _measurements(args) -> dict[str, list[str]]:
    """Name -> overrides of every measurement this invocation can make: (a)'s variants and (b)."""
    return {**(CAUSAL_VARIANTS if args.causal else VARIANTS), **REFERENCES}


def in_subprocess(name: str, out: Path, args) -> dict:
    """Each measurement in a fresh process: no allocator state or caches carried from one to the next."""
    result_file = out / f"{name}.json"
    command = [sys.executable, __file__, *sys.argv[1:], "--one", name, str(out)]
    subprocess.run(
        command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL if not os.environ.get("BENCH_VERBOSE") else None
    )
    return json.loads(result_file.read_text())


def _summary(name: str, measured: dict) -> str:
    return (
        f"{name:>36}: {measured['samples']} samples in {measured['seconds']:>6.1f} s = "
        f"{measured['samples_per_s']:>6.2f} samples/s | held-out label {measured['held_out_label_loss']:.3f} "
        f"rationale {measured['held_out_rationale_loss']:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--causal",
        action="store_true",
        help="the bundled SmolLM2-135M and the causal levers (defaults below change with it)",
    )
    parser.add_argument("--samples", type=int, help="training examples each method sees (1024; causal 128)")
    parser.add_argument("--held-out", type=int, help="CQA rows held out for the loss comparison (256; causal 64)")
    parser.add_argument("--batch-size", type=int, help="examples per step (16; causal 8)")
    parser.add_argument("--learning-rate", type=float, help="AdamW's (1e-3; causal 1e-4)")
    parser.add_argument("--preset", help="the student (t5-mini; causal smollm2-135m)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--zero-stage", type=int, default=0)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--only", choices=[*VARIANTS, *CAUSAL_VARIANTS, *REFERENCES], nargs="*")
    parser.add_argument("--repeats", type=int, default=2, help="rounds over all measurements; the best of each counts")
    parser.add_argument("--parallelism", action="store_true", help="only the DDP / ZeRO step-time table")
    parser.add_argument("--parallel-steps", type=int, default=8)
    parser.add_argument("--one", nargs=2, metavar=("NAME", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    defaults = {
        "samples": (1024, 128),
        "held_out": (256, 64),
        "batch_size": (16, 8),
        "learning_rate": (1e-3, 1e-4),
        "preset": ("t5-mini", "smollm2-135m"),
    }
    for key, (seq2seq, causal) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, causal if args.causal else seq2seq)
    torch.set_num_threads(os.cpu_count() or 1)
    if args.one:
        name, out = args.one
        (Path(out) / f"{name}.json").write_text(json.dumps(measure_one(name, Path(out), args)))
        return

    name = "student_throughput" + ("_causal" if args.causal else "") + ("_gpu" if args.device == "cuda" else "")
    results_file = RESULTS / f"{name}.json"
    headline = CAUSAL_HEADLINE if args.causal else HEADLINE
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    with tempfile.TemporaryDirectory() as out:
        config, run = prepare_run(Path(out), args)
        if args.parallelism:
            results["parallelism"] = {
                "preset": args.preset,
                "batch_size": args.batch_size,
                "rows": parallelism_table(config, run, args),
            }
        else:
            measured: dict[str, dict] = {}
            for repeat in range(args.repeats):  # rounds over all, so a slow spell of the machine hits each alike
                for name in args.only or _measurements(args):
                    result = in_subprocess(name, Path(out), args)
                    print(f"round {repeat + 1}: " + _summary(name, result), flush=True)
                    best = measured.setdefault(name, result)
                    best.setdefault("samples_per_s_each_round", []).append(result["samples_per_s"])
                    if result["samples_per_s"] > best["samples_per_s"]:
                        best.update({k: v for k, v in result.items() if k != "samples_per_s_each_round"})
            results.update(measured)
            results.update(
                preset=args.preset,
                batch_size=args.batch_size,
                samples=args.samples,
                headline=headline,
                device=measured[next(iter(measured))]["device"],
                data="CQA train rows with the paper's PaLM rationales (replayed)",
            )
            if headline in measured and "reference" in measured:
                a, b = measured[headline], measured["reference"]
                results.update(
                    ratio_vs_reference=round(a["samples_per_s"] / b["samples_per_s"], 2),
                    loss_raydsbs={k: a[k] for k in ("held_out_label_loss", "held_out_rationale_loss")},
                    loss_reference={k: b[k] for k in ("held_out_label_loss", "held_out_rationale_loss")},
                )
                print(f"ratio a/b ({headline} / reference) = {results['ratio_vs_reference']}   (target >= 1.5)")
            results["ratios"] = {
                f"{name} / {base}": round(m["samples_per_s"] / measured[base]["samples_per_s"], 2)
                for name, m in measured.items()
                for base in REFERENCES
                if base in measured
            }
    results["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    results_file.parent.mkdir(parents=True, exist_ok=True)
    results_file.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {results_file.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
