"""Scoring a student in the driver's process (eval.actors=0, what CPU runs do by default) against a Ray Data
stage of scoring actors, one copy of the student each (what GPU runs do: one per training worker's GPU).

A student of the given config is trained for a few steps (its own `raydsbs train` process; the standard
fine-tuning method, so no teacher runs), then the same val and test rows are scored both ways, in this
process, one after the other: the wall time of each from the call to the last prediction (the actors' start
and model load included), rows per second, and whether the predictions agree row for row.

    .venv/bin/python benchmarks/evaluation.py                          # the quickstart's SmolLM2 LoRA student
    .venv/bin/python benchmarks/evaluation.py --rows 512 --actors 2 4

Writes benchmarks/results/evaluation.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "evaluation.json"
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="jobs/quickstart.yaml")
    parser.add_argument("--rows", type=int, default=256, help="val + test rows scored (half each)")
    parser.add_argument("--actors", type=int, nargs="+", default=[2])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import ray

    from raydsbs.evaluate import score
    from raydsbs.resolve import load_config, with_overrides
    from raydsbs.rundir import open_run
    from raydsbs.student.launcher import training_name, without_ignored_keys
    from raydsbs.student.learner import MODEL_SUBDIR

    with tempfile.TemporaryDirectory(prefix="raydsbs-eval-bench-") as out:
        overrides = [
            f"output_dir={out}",
            "tag=evalbench",
            "train.method=standard_finetune",
            "train.max_steps=4",
            "train.eval_every_steps=4",
            f"task.num_val={args.rows // 2}",
            f"task.num_test={args.rows - args.rows // 2}",
        ]
        trained = subprocess.run(
            [sys.executable, "-m", "raydsbs", "train", args.config, *overrides],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if trained.returncode != 0:
            print(trained.stderr[-4000:])
            return 1
        config = load_config(ROOT / args.config, overrides)
        run = open_run(config)
        folder = run.training(training_name(without_ignored_keys(config))) / MODEL_SUBDIR
        results = []
        baseline = None
        for actors in [0, *args.actors]:
            started = time.perf_counter()
            metrics, rows = score(with_overrides(config, {"eval.actors": actors}), run, folder)
            seconds = time.perf_counter() - started
            baseline = baseline or (seconds, rows)
            results.append(
                {
                    "where": "driver" if actors == 0 else f"{actors} Ray Data actors",
                    "actors": actors,
                    "rows": len(rows),
                    "seconds": round(seconds, 1),
                    "rows_per_s": round(len(rows) / seconds, 2),
                    "speed_vs_driver": round(baseline[0] / seconds, 2),
                    "same_predictions_as_driver": rows == baseline[1],
                    "rows_answered_otherwise": sum(a != b for a, b in zip(rows, baseline[1], strict=True)),
                    "test_accuracy": metrics["test_accuracy"],
                }
            )
            print(json.dumps(results[-1]))
        ray.shutdown()
    measured = {
        "config": args.config,
        "student": config.student.pretrained or config.student.preset,
        "lora": bool(config.student.lora),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU",
        "cpus_per_worker": config.train.cpus_per_worker,
        "eval_batch_size": config.eval.batch_size,
        "rows": args.rows,
        "results": results,
    }
    record = json.loads(args.out.read_text()) if args.out.is_file() else {"runs": []}
    same = (measured["config"], measured["rows"])
    record["runs"] = [run for run in record["runs"] if (run["config"], run["rows"]) != same] + [measured]
    args.out.write_text(json.dumps(record, indent=2) + "\n")  # one entry per config and row count
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
