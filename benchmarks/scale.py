"""How each stage's time and memory grow with the corpus: 10k, 100k and 1M train rows end to end.

The SVAMP task on written JSONL files of arithmetic problems at each size (1,000 val and 1,000 test rows
throughout; the embedded arith task makes only about 79 thousand distinct problems), the replay stand-in
teacher (a completion in the teacher's style for every row: the whole stage without an engine's cost), a t5-tiny
student trained step-by-step on two Ray Train workers for a fixed step budget, then scored. Each stage runs in
a process of its own, one after another, on the same run directory:

    corpus     write_corpus                   the task's rows, validated, as Parquet
    teacher    generate                       requests, Ray Data stream, selection (replay stand-in)
    tokenize   prepare_training_data          the run's tokenizer and the tokenized examples
    train      train_student                  Ray Train, 2 workers, train.max_steps steps
    evaluate   evaluate_student               val and test predictions

and for each the wall time, and in MiB the peak of the stage's driver process's own resident memory and of
the largest of the Ray worker processes it started (Ray Train workers, Ray Data tasks and actors), polled
every 0.1 s: resident memory less shared memory, that is less the pages of Ray's object store a process
mapped (``*_peak_mib``); and beside them the kernel's peak with those pages (VmHWM, ``*_hwm_mib``).

    .venv/bin/python benchmarks/scale.py                          # 10k, 100k, 1M rows
    .venv/bin/python benchmarks/scale.py --rows 10000 100000      # some sizes
    .venv/bin/python benchmarks/scale.py --stages 1 --again       # the corpus stage only, measured anew

A size already in benchmarks/results/scale.json is kept (``--again`` measures it anew), so a stopped run goes
on with the next size; ``--stages`` measures the first stages only and replaces just their figures (each
stage's figures name the commit they were measured at). The target: no stage's peak grows by more than 20 %
from 100k to 1M rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "scale.json"
WORK = ROOT / "benchmarks" / ".scale"  # the run directories (ignored by git), removed once a size is measured
STAGES = ("corpus", "teacher", "tokenize", "train", "evaluate")
GROWTH_TARGET = 1.2  # peak memory at 1M rows over 100k rows, per stage
OVERRIDES = [
    "tag=scale",
    "task.name=svamp",
    "task.num_val=1000",
    "task.num_test=1000",
    "teacher.backend=replay",
    "teacher.rows_per_checkpoint=2048",
    "student.preset=t5-tiny",
    "train.method=step_by_step",
    "train.num_workers=2",
    "train.batch_size=32",
    "train.max_steps=40",
    "train.eval_every_steps=40",
]

# What each stage's process runs: the run directory's config, then the stage's function.
STAGE_CODE = {
    "corpus": "from raydsbs.data.corpus import write_corpus; write_corpus(config.task, run, config.ray)",
    "teacher": "from raydsbs.teacher.pipeline import generate; generate(config, run)",
    "tokenize": "from raydsbs.student.launcher import prepare_training_data; prepare_training_data(config, run)",
    "train": "from raydsbs.student.launcher import train_student; train_student(config, run)",
    "evaluate": (
        "from raydsbs.evaluate import evaluate_student; from raydsbs.student.launcher import train_student; "
        "evaluate_student(config, run, train_student(config, run))"
    ),
}
PRELUDE = (
    "import sys; sys.path.insert(0, {root!r}); from raydsbs.rundir import RunDir; "
    "run = RunDir({run!r}); config = run.load_config(); "
)


def _memory_mib(process: psutil.Process) -> tuple[float, float]:
    """(its own resident memory now, its peak resident memory so far) in MiB; (0, 0) once it is gone.

    Its own: resident pages less shared-memory ones (RssAnon + RssFile). The pages of Ray's object store
    that a process has written or read are shared memory mapped into it and count in its VmHWM, but
    they are the object store's, bounded by its own budget: a block a task wrote is not the task's."""
    fields = {}
    try:
        with open(f"/proc/{process.pid}/status") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in ("VmHWM", "RssAnon", "RssFile"):
                    fields[name] = int(value.split()[0]) / 1024
    except OSError:
        return 0.0, 0.0
    return fields.get("RssAnon", 0.0) + fields.get("RssFile", 0.0), fields.get("VmHWM", 0.0)


def _is_ray_worker(process: psutil.Process) -> bool:
    try:
        return process.cmdline()[:1] and process.cmdline()[0].startswith("ray::")
    except psutil.Error:
        return False


def run_stage(stage: str, run_dir: Path, log: Path) -> dict:
    """One stage in a process of its own: its wall time, and the peaks of its driver and its Ray workers."""
    code = PRELUDE.format(root=str(ROOT), run=str(run_dir)) + STAGE_CODE[stage]
    started = time.perf_counter()
    with open(log, "a") as out:
        child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        driver = psutil.Process(child.pid)
        peaks = {"driver": [0.0, 0.0], "worker": [0.0, 0.0]}  # own, with shared memory (VmHWM)
        while child.poll() is None:
            try:
                workers = [p for p in driver.children(recursive=True) if _is_ray_worker(p)]
            except psutil.Error:
                workers = []
            for role, process in [("driver", driver)] + [("worker", worker) for worker in workers]:
                own, hwm = _memory_mib(process)
                peaks[role] = [max(peaks[role][0], own), max(peaks[role][1], hwm)]
            time.sleep(0.1)
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        raise RuntimeError(f"stage {stage} failed ({child.returncode}); see {log}")
    return {
        "seconds": round(seconds, 1),
        "driver_peak_mib": round(peaks["driver"][0], 1),
        "worker_peak_mib": round(peaks["worker"][0], 1) or None,
        "driver_hwm_mib": round(peaks["driver"][1], 1),
        "worker_hwm_mib": round(peaks["worker"][1], 1) or None,
    }


def _problems(path: Path, first: int, count: int) -> None:
    """``count`` one-step problems as SVAMP's rows ({"input", "label"}), numbered from ``first`` (all distinct)."""
    from raydsbs.tasks.arith import ITEMS, NAMES

    with open(path, "w") as out:
        for number in range(first, first + count):
            name, item = NAMES[number % len(NAMES)], ITEMS[(number // len(NAMES)) % len(ITEMS)]
            a, b = 2 + number % 97, 3 + (number // 97) % 89
            question = f"Problem {number}: {name} has {a} {item} and buys {b} more. How many {item} now?"
            out.write(json.dumps({"input": question, "label": f"( {a}.0 + {b}.0 )"}) + "\n")


def _stand_in_completions(run_dir: Path, path: Path) -> None:
    """A completion in the teacher's style for every row of every split ("... The answer is <gold>.")."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from raydsbs.tasks import get_task

    marker = get_task("svamp").answer_marker

    with pq.ParquetWriter(path, pa.schema([("id", pa.string()), ("completion", pa.string())])) as writer:
        for split in ("train", "val", "test"):
            for batch in pq.ParquetFile(run_dir / "corpus" / f"{split}.parquet").iter_batches(columns=["id", "gold"]):
                completion = pc.binary_join_element_wise(
                    "Adding the two numbers gives ", batch["gold"], f". {marker} ", batch["gold"], ".", ""
                )
                writer.write_table(pa.table({"id": batch["id"], "completion": completion}))


def _commit() -> str:
    """The commit measured; "-dirty" when the code differs from it (the results this script writes aside)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return (head.stdout.strip() or "unknown") + ("-dirty" if changed.stdout.strip() else "")


def measure(rows: int, stages_to_run: tuple[str, ...] = STAGES) -> dict:
    from raydsbs.resolve import load_config
    from raydsbs.rundir import open_run

    work = WORK / str(rows)
    shutil.rmtree(work, ignore_errors=True)  # a size stopped midway starts again
    work.mkdir(parents=True)
    replay = work / "replay.parquet"
    files = {"train": (0, rows), "val": (rows, 1000), "test": (rows + 1000, 1000)}
    for split, (first, count) in files.items():
        _problems(work / f"{split}.jsonl", first, count)
    config = load_config(
        None,
        [
            *OVERRIDES,
            f"output_dir={work / 'runs'}",
            f"task.num_train={rows}",
            f"teacher.replay_file={replay}",
            *(f"task.{split}_file={work / f'{split}.jsonl'}" for split in files),
        ],
    )
    run_dir = open_run(config).root.local_path()
    log = work / "stages.log"
    stages, commit = {}, _commit()
    for stage in stages_to_run:
        stages[stage] = {**run_stage(stage, run_dir, log), "commit": commit}
        if stage == "corpus":
            _stand_in_completions(run_dir, replay)
        print(f"{rows:>9,} rows | {stage:>8} | {json.dumps(stages[stage])}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return {"rows": rows, "stages": stages}


def growth(runs: list[dict], low: int = 100_000, high: int = 1_000_000) -> dict | None:
    """Per stage, the peak at ``high`` rows over the peak at ``low`` rows, driver and workers."""
    by_rows = {run["rows"]: run["stages"] for run in runs}
    if low not in by_rows or high not in by_rows:
        return None
    out = {}
    for stage in (s for s in STAGES if s in by_rows[low] and s in by_rows[high]):
        a, b = by_rows[low][stage], by_rows[high][stage]
        out[stage] = {
            key: round(b[key] / a[key], 3) if a.get(key) and b.get(key) else None
            for key in ("driver_peak_mib", "worker_peak_mib", "driver_hwm_mib", "worker_hwm_mib")
        }
    own = [v for s in out.values() for key, v in s.items() if key.endswith("_peak_mib")]  # the target's measure
    met = len(out) == len(STAGES) and all(v is None or v <= GROWTH_TARGET for v in own)
    return {**out, "target": GROWTH_TARGET, "met": met}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--again", action="store_true", help="measure sizes already in the results again")
    parser.add_argument(
        "--stages", type=int, default=len(STAGES), metavar="N", help=f"the first N stages only, of {', '.join(STAGES)}"
    )
    args = parser.parse_args(argv)
    stages_to_run = STAGES[: args.stages]
    record = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"runs": []}
    for rows in args.rows:
        if not args.again and any(run["rows"] == rows for run in record["runs"]):
            print(f"{rows:,} rows: measured already (--again to redo)")
            continue
        result = measure(rows, stages_to_run)
        earlier = next((r for r in record["runs"] if r["rows"] == rows), {"stages": {}})
        result["stages"] = {**earlier["stages"], **result["stages"]}  # the stages not run keep their figures
        record["runs"] = sorted([r for r in record["runs"] if r["rows"] != rows] + [result], key=lambda r: r["rows"])
        record["machine"] = (
            f"{platform.machine()}, {os.cpu_count()} CPU cores, {psutil.virtual_memory().total >> 30} GiB"
        )
        record["settings"] = OVERRIDES
        record["growth_100k_to_1m"] = growth(record["runs"])
        RESULTS.write_text(json.dumps(record, indent=2) + "\n")  # after every size: a stopped run keeps what it had
    print(json.dumps(record.get("growth_100k_to_1m"), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
