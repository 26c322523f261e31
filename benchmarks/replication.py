"""The paper's replication on its own released teacher outputs, on this CPU.

For SVAMP and CQA (jobs/replication-svamp.yaml, jobs/replication-cqa.yaml) the
released PaLM-540B completions are replayed as the teacher, and the three
methods (step-by-step, standard fine-tuning, standard distillation) train at
12.5, 25, 50 and 100 % of the train split with 2 seeds each: one `raydsbs run`
per task, the sweep included. It writes

    benchmarks/results/replication.json         every cell: mean and sd over seeds, the teacher's accuracy
    benchmarks/results/replication_<task>.png   accuracy against training-set size, per method
    benchmarks/results/replication_<task>.md    the run's report
    benchmarks/results/replication.md           the README's tables: test accuracy per method and fraction

    .venv/bin/python benchmarks/replication.py                      # both tasks, ~1 hour on 2 cores
    .venv/bin/python benchmarks/replication.py --tasks svamp --smoke  # one fraction, one seed, one epoch
    .venv/bin/python benchmarks/replication.py --render               # replication.md again from the JSON
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
TASKS = ("svamp", "cqa")
# The paper's PaLM-540B few-shot CoT accuracy on the test split (Table 5/6 of the paper; its parsers).
PAPER_TEACHER = {"svamp": 0.740, "cqa": 0.772}
SMOKE = ["train.epochs=1", "sweep.grid={train.method: [step_by_step, standard_finetune, standard_distill], "
         "train.train_fraction: [0.25], train.seed: [0]}"]


def run_task(task: str, output_dir: Path, extra: list[str]) -> Path:
    """`raydsbs run` on the task's replication config; returns the run directory."""
    config = REPO / "jobs" / f"replication-{task}.yaml"
    command = [sys.executable, "-m", "raydsbs", "run", str(config), f"output_dir={output_dir}", *extra]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, cwd=REPO, check=True)
    (run_dir,) = [path for path in output_dir.iterdir() if path.name.startswith(f"replication-{task}-")]
    return run_dir


def cells(run_dir: Path) -> list[dict]:
    """One row per (method, fraction): test accuracy mean and sd over the seeds, training seconds."""
    results = json.loads((run_dir / "sweep" / "results.json").read_text())
    grouped: dict[tuple, list[dict]] = {}
    for result in results:
        grouped.setdefault((result["method"], result["train_fraction"]), []).append(result)
    rows = []
    for (method, fraction), group in sorted(grouped.items()):
        accuracies = [r["test_accuracy"] for r in group]
        seconds = [json.loads((run_dir / "student" / r["training"] / "training.json").read_text())["seconds"]
                   for r in group]
        rows.append({"method": method, "train_fraction": fraction, "seeds": len(group),
                     "test_accuracy_mean": round(statistics.mean(accuracies), 4),
                     "test_accuracy_sd": round(statistics.stdev(accuracies), 4) if len(accuracies) > 1 else 0.0,
                     "test_accuracies": accuracies, "train_seconds_mean": round(statistics.mean(seconds), 1)})
    return rows


def task_result(task: str, run_dir: Path, wall_s: float) -> dict:
    import yaml

    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    teacher = json.loads((run_dir / "summary.json").read_text())["teacher"]
    corpus = json.loads((run_dir / "summary.json").read_text()).get("corpus", {})
    return {
        "student": config["student"]["preset"], "epochs": config["train"]["epochs"],
        "label_source_step_by_step": config["train"]["label_source"],
        "rows": {split: corpus.get(split) for split in ("train", "val", "test")},
        "teacher_accuracy_test": teacher.get("teacher_accuracy_test"),
        "teacher_accuracy_test_paper": PAPER_TEACHER[task],
        "teacher_accuracy_train": teacher.get("teacher_accuracy_train"),
        "wall_s": round(wall_s, 1), "cells": cells(run_dir), "run_dir": str(run_dir),
    }


def print_table(task: str, result: dict) -> None:
    print(f"\n{task}: {result['student']}, {result['epochs']} epochs, teacher (replayed PaLM) test accuracy "
          f"{100 * (result['teacher_accuracy_test'] or 0):.1f} %, {result['wall_s'] / 60:.1f} min")
    print(f"{'method':<20}{'fraction':>9}{'test acc %':>16}")
    for cell in result["cells"]:
        print(f"{cell['method']:<20}{cell['train_fraction']:>9g}"
              f"{100 * cell['test_accuracy_mean']:>10.1f} ± {100 * cell['test_accuracy_sd']:.1f}")


def markdown(summary: dict) -> str:
    """One table per task: rows are training-set fractions, columns the methods (test accuracy %, mean ± sd)."""
    lines = []
    for task, result in summary["tasks"].items():
        methods = sorted({cell["method"] for cell in result["cells"]})
        fractions = sorted({cell["train_fraction"] for cell in result["cells"]})
        by_key = {(cell["method"], cell["train_fraction"]): cell for cell in result["cells"]}
        rows = result["rows"]
        lines += [f"**{task.upper()}**: student {result['student']}, {result['epochs']} epochs, "
                  f"{rows['train']} train / {rows['val']} val / {rows['test']} test rows, "
                  f"{result['wall_s'] / 60:.0f} min. Teacher (PaLM-540B, replayed) on the same test rows: "
                  f"{100 * result['teacher_accuracy_test']:.1f} % (the paper, with its parser: "
                  f"{100 * result['teacher_accuracy_test_paper']:.1f} %).", "",
                  "| train fraction | " + " | ".join(method.replace("_", " ") for method in methods) + " |",
                  "|---" * (len(methods) + 1) + "|"]
        for fraction in fractions:
            cells = [by_key.get((method, fraction)) for method in methods]
            lines.append(f"| {100 * fraction:g} % | " + " | ".join(
                f"{100 * c['test_accuracy_mean']:.1f} ± {100 * c['test_accuracy_sd']:.1f}" if c else "–"
                for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--output-dir", type=Path, default=REPO / "runs" / "replication",
                        help="where the run directories go (a rerun resumes them)")
    parser.add_argument("--smoke", action="store_true", help="one fraction, one seed, one epoch: checks the path")
    parser.add_argument("--render", action="store_true", help="only write replication.md from replication.json")
    args = parser.parse_args()
    if args.render:
        (RESULTS / "replication.md").write_text(markdown(json.loads((RESULTS / "replication.json").read_text())))
        return 0

    extra = SMOKE if args.smoke else []
    output_dir = args.output_dir / ("smoke" if args.smoke else "full")
    output_dir.mkdir(parents=True, exist_ok=True)
    results_file = output_dir / "replication.json" if args.smoke else RESULTS / "replication.json"
    summary = json.loads(results_file.read_text()) if results_file.is_file() else {}
    summary.update({"command": "python benchmarks/replication.py" + (" --smoke" if args.smoke else ""),
                    "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, no GPU"})
    summary.setdefault("tasks", {})
    for task in args.tasks:
        started = time.perf_counter()
        run_dir = run_task(task, output_dir, extra)
        result = task_result(task, run_dir, time.perf_counter() - started)
        summary["tasks"][task] = result
        print_table(task, result)
        if not args.smoke:
            shutil.copy(run_dir / "plots" / "accuracy_vs_fraction.png", RESULTS / f"replication_{task}.png")
            report = (run_dir / "report.md").read_text()  # its plot beside it, under the name it has here
            (RESULTS / f"replication_{task}.md").write_text(
                report.replace("(plots/accuracy_vs_fraction.png)", f"(replication_{task}.png)"))
        results_file.write_text(json.dumps(summary, indent=2) + "\n")
        if not args.smoke:
            (RESULTS / "replication.md").write_text(markdown(summary))
    print(f"\nwrote {results_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
