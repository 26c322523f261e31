"""The paper's comparison on its own released teacher outputs, with a student that learns, on this CPU.

For each task (jobs/replication-<task>.yaml) the released PaLM-540B completions
are replayed as the teacher (train rows for the distillation set, test rows for
the teacher's own accuracy), and the bundled SmolLM2-135M, pretrained, learns
with LoRA by each of the four methods (step-by-step, standard fine-tuning,
standard distillation, CoT fine-tuning) at several fractions of the train
split, with the same optimizer-step budget at every fraction (as the paper's
code). One `raydsbs run` per task, the sweep included; it also measures the
untrained student and the trivial floor on the same test rows. Writes

    benchmarks/results/replication.json         per task: floor, untrained_student, teacher_test, student, cells
    benchmarks/results/replication_<task>.png   accuracy against training-set size, with the three lines
    benchmarks/results/replication_<task>.md    the run's report
    benchmarks/results/replication.md           the tables of benchmarks/README.md

    .venv/bin/python benchmarks/replication.py                     # svamp and cqa (~2 hours on 2 cores)
    .venv/bin/python benchmarks/replication.py --task esnli --data-dir DIR   # any task with released files
    .venv/bin/python benchmarks/replication.py --task svamp --smoke          # one fraction, one seed, few steps
    .venv/bin/python benchmarks/replication.py --render                      # replication.md again from the JSON
    .venv/bin/python benchmarks/replication.py --task cqa --collect          # the JSON from a run stopped midway

A killed run started again with the same command goes on where it stopped: the
teacher outputs, every finished training and evaluation are kept (the run
directory and the Tune experiment are resumed), an interrupted training goes on
from its last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DEFAULT_TASKS = ("svamp", "cqa")
# The paper's PaLM-540B few-shot CoT accuracy on the test split (its Tables; its own parsers).
PAPER_TEACHER = {"svamp": 0.740, "cqa": 0.772}
RESULTS_SCHEMA = 2  # replication.json's layout; results of another layout are not kept beside these
METHOD_ORDER = ("step_by_step", "standard_finetune", "standard_distill", "cot_finetune")
SMOKE = [
    "train.max_steps=4",
    "train.eval_every_steps=2",
    "task.num_test=16",
    "task.num_val=8",
    "sweep.grid={train.method: [step_by_step, standard_finetune, standard_distill, cot_finetune], "
    "train.train_fraction: [0.25], train.seed: [0]}",
]


def run_task(task: str, output_dir: Path, extra: list[str]) -> Path:
    """`raydsbs run` on the task's replication config; returns the run directory."""
    config = REPO / "jobs" / f"replication-{task}.yaml"
    command = [sys.executable, "-m", "raydsbs", "run", str(config), f"output_dir={output_dir}", *extra]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, cwd=REPO, check=True)
    (run_dir,) = [path for path in output_dir.iterdir() if path.name.startswith(f"replication-{task}-")]
    return run_dir


def _finished_trainings(run_dir: Path) -> list[dict]:
    """The scores of every training of the run that has finished, sweep or not (for a run stopped midway)."""
    return [
        json.loads(path.read_text())
        for path in sorted((run_dir / "student").glob("*/metrics.json"))
        if path.parent.name != "untrained"
    ]


def cells(run_dir: Path) -> list[dict]:
    """One entry per training of the sweep (or, for a run stopped midway, per finished training): method,
    fraction, seed, examples, accuracies, cost."""
    out = []
    results_file = run_dir / "sweep" / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else _finished_trainings(run_dir)
    for result in results:
        training = json.loads((run_dir / "student" / result["training"] / "training.json").read_text())
        out.append(
            {
                key: result.get(key)
                for key in (
                    "method",
                    "train_fraction",
                    "seed",
                    "examples",
                    "test_accuracy",
                    "val_accuracy",
                    "test_tokens_per_answer",
                )
            }
            | {"train_seconds": training["seconds"], "optimizer_steps": training["final_step"]}
        )
    return sorted(out, key=lambda c: (METHOD_ORDER.index(c["method"]), c["train_fraction"], c["seed"]))


def task_result(task: str, run_dir: Path, wall_s: float | None) -> dict:
    import yaml

    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    if "baselines" not in summary:  # a run stopped before its baselines: measure them now
        from raydsbs.evaluate import write_baselines
        from raydsbs.rundir import RunDir

        run = RunDir(run_dir)
        write_baselines(run.load_config(), run)
        summary = json.loads((run_dir / "summary.json").read_text())
    teacher, baselines = summary["teacher"], summary["baselines"]
    lora = config["student"]["lora"]
    student = config["student"]["pretrained"] or config["student"]["preset"]
    return {
        "student": student + (f" (LoRA r={lora['rank']})" if lora else " (full fine-tuning)"),
        "floor": baselines["floor_test_accuracy"],
        "floor_how": baselines["floor"],
        "untrained_student": baselines["untrained_student_test_accuracy"],
        "teacher_test": teacher.get("teacher_accuracy_test"),
        "teacher_test_paper": PAPER_TEACHER.get(task),
        "teacher_train": teacher["teacher_accuracy_train"],
        "rows": {split: summary["corpus"].get(split) for split in ("train", "val", "test")},
        "max_steps": config["train"]["max_steps"],
        "batch_size": config["train"]["batch_size"],
        "label_source": config["train"]["label_source"],
        "wall_s": None if wall_s is None else round(wall_s, 1),
        "cells": cells(run_dir),
        "run_dir": str(run_dir),
        "complete": (run_dir / "sweep" / "results.json").is_file(),
    }


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def _standard_error(accuracy: float, rows: int) -> float:
    return (accuracy * (1 - accuracy) / rows) ** 0.5


def markdown(summary: dict) -> str:
    """One table per task: rows are training-set fractions, columns the methods (test accuracy %, mean ± sd
    over seeds), then the three reference lines on the same test rows."""
    lines = []
    for task, result in summary["tasks"].items():
        methods = [m for m in METHOD_ORDER if any(c["method"] == m for c in result["cells"])]
        fractions = sorted({c["train_fraction"] for c in result["cells"]})
        seeds = sorted({c["seed"] for c in result["cells"]})
        rows = result["rows"]
        lines += [
            f"**{task.upper()}**: student {result['student']}, {result['max_steps']} optimizer steps of "
            f"{result['batch_size']} at every fraction, {len(seeds)} seed(s), {rows['train']} train / "
            f"{rows['val']} val / {rows['test']} test rows"
            + (f", {result['wall_s'] / 60:.0f} min." if result.get("wall_s") else ".")
            + (
                ""
                if result.get("complete", True)
                else f" **Stopped midway: {len(result['cells'])} trainings of the grid finished.**"
            ),
            "",
            "| train fraction | " + " | ".join(m.replace("_", " ") for m in methods) + " |",
            "|---" * (len(methods) + 1) + "|",
        ]
        for fraction in fractions:
            row = []
            for method in methods:
                found = [c for c in result["cells"] if c["method"] == method and c["train_fraction"] == fraction]
                examples = statistics.mean(c["examples"] for c in found) if found else 0
                row.append(f"{_mean_sd([c['test_accuracy'] for c in found])} ({examples:.0f} ex.)" if found else "–")
            lines.append(f"| {100 * fraction:g} % | " + " | ".join(row) + " |")
        teacher = result["teacher_test"]
        if len(seeds) == 1:  # no spread over seeds to show: the test split's own sampling error instead
            best = max(c["test_accuracy"] for c in result["cells"])
            lines += [
                "",
                f"One seed: an accuracy p measured on {rows['test']} test rows has a standard error of "
                f"sqrt(p(1-p)/{rows['test']}), {100 * _standard_error(best, rows['test']):.1f} points at the "
                f"best cell's {100 * best:.1f} %.",
            ]
        lines += [
            "",
            f"On the same {rows['test']} test rows: teacher (PaLM-540B, replayed) "
            f"{100 * teacher:.1f} %"
            + (
                f" (the paper, with its parser: {100 * result['teacher_test_paper']:.1f} %)"
                if result.get("teacher_test_paper")
                else ""
            )
            + f"; untrained student {100 * result['untrained_student']:.1f} %; trivial floor "
            f"{100 * result['floor']:.1f} % ({result['floor_how']}).",
            "",
        ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--task",
        nargs="+",
        default=list(DEFAULT_TASKS),
        help="tasks with a jobs/replication-<task>.yaml (svamp, cqa, ...)",
    )
    parser.add_argument(
        "--data-dir", help="the folder of the task's released files (one task), instead of the config's task.data_dir"
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=REPO / "runs" / "replication",
        help="where the run directories go (a rerun resumes them)",
    )
    parser.add_argument("--smoke", action="store_true", help="one fraction, one seed, 4 steps: checks the path")
    parser.add_argument("--render", action="store_true", help="only write replication.md from replication.json")
    parser.add_argument(
        "--collect",
        action="store_true",
        help="replication.json and .md from the run directories as they are, without running: a run "
        "stopped midway gives its finished trainings (and its baselines, measured if missing)",
    )
    args = parser.parse_args()
    if args.render:
        (RESULTS / "replication.md").write_text(markdown(json.loads((RESULTS / "replication.json").read_text())))
        return 0
    if args.data_dir and len(args.task) != 1:
        parser.error("--data-dir names the files of one task: give one --task")
    for task in args.task:
        if not (REPO / "jobs" / f"replication-{task}.yaml").is_file():
            parser.error(
                f"no jobs/replication-{task}.yaml; tasks with one: "
                + ", ".join(
                    sorted(p.stem.removeprefix("replication-") for p in (REPO / "jobs").glob("replication-*.yaml"))
                )
            )

    extra = (SMOKE if args.smoke else []) + (
        [f"task.data_dir={Path(args.data_dir).resolve()}"] if args.data_dir else []
    )
    output_dir = args.output_dir / ("smoke" if args.smoke else "full")
    output_dir.mkdir(parents=True, exist_ok=True)
    results_file = output_dir / "replication.json" if args.smoke else RESULTS / "replication.json"
    summary = json.loads(results_file.read_text()) if results_file.is_file() else {}
    if summary.get("schema") != RESULTS_SCHEMA:  # an earlier benchmark's results: its tasks are not comparable
        summary = {}
    summary.update(
        {
            "schema": RESULTS_SCHEMA,
            "command": "python benchmarks/replication.py " + " ".join(sys.argv[1:]),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU",
        }
    )
    summary.setdefault("tasks", {})
    for task in args.task:
        started = time.perf_counter()
        if args.collect:
            (run_dir,) = [path for path in output_dir.iterdir() if path.name.startswith(f"replication-{task}-")]
            summary["tasks"][task] = task_result(task, run_dir, None)
        else:
            run_dir = run_task(task, output_dir, extra)
            summary["tasks"][task] = task_result(task, run_dir, time.perf_counter() - started)
        results_file.write_text(json.dumps(summary, indent=2) + "\n")
        print(markdown({"tasks": {task: summary["tasks"][task]}}), flush=True)
        if not args.smoke:
            if args.collect:  # the report of the trainings there are (a stopped run has none yet)
                from raydsbs.report import write_report
                from raydsbs.rundir import RunDir

                write_report(RunDir(run_dir).load_config(), RunDir(run_dir))
            shutil.copy(run_dir / "plots" / "accuracy_vs_fraction.png", RESULTS / f"replication_{task}.png")
            report = (run_dir / "report.md").read_text()  # its plot beside it, under the name it has here
            (RESULTS / f"replication_{task}.md").write_text(
                report.replace("(plots/accuracy_vs_fraction.png)", f"(replication_{task}.png)")
            )
            (RESULTS / "replication.md").write_text(markdown(summary))
    print(f"\nwrote {results_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
