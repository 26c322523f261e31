"""Several Ray nodes on one machine (ray.cluster_utils.Cluster), each a separate raylet: vLLM
teacher replicas spread over the nodes, a node lost mid-generation costs no request and repeats
none, and a training on nodes that share only a bucket resumes from its checkpoint there when a worker node
dies."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from raydsbs.staging import committed
from raydsbs.storage import location
from tests.integration.helpers import NLI_ROWS, REPO, Background, jsonl, last_checkpoint_step

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    # No dashboard: nothing here reads it, and on 2 cores its processes slow the engines' start.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    ray.init(address=cluster.address)  # this process only watches: it reserves nothing
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def _available(node, resource: str) -> float:
    from ray._private.state import available_resources_per_node

    return available_resources_per_node().get(node.node_id, {}).get(resource, 0.0)


def test_a_run_without_an_address_starts_its_own_cluster_while_another_is_registered_on_the_machine(cluster):
    """Ray's Cluster (like `ray start`) registers its address on the machine, and a bare ray.init() joins it:
    the other pytest worker's runs once did. With no ray.address a stage starts a cluster of its own."""
    from ray._private.utils import read_ray_address

    assert read_ray_address() == cluster.address  # what a bare ray.init() would join
    script = (
        "import ray; from raydsbs.config import RayConfig; from raydsbs.ray_session import start_ray; "
        "start_ray(RayConfig()); print(ray.get_runtime_context().gcs_address, ray.cluster_resources()['CPU'])"
    )
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    started = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert started.returncode == 0, started.stderr[-3000:]
    address, cpus = started.stdout.split()[-2:]
    assert address != cluster.address and float(cpus) >= 4  # its own, with the logical CPUs a local one declares


def test_esnli_on_vllm_replicas_on_two_nodes_with_two_samples_a_prompt_too_long_and_a_lost_node(cluster, tmp_path):
    """The teacher on a real cluster: e-SNLI through two vLLM replicas, one on each of two nodes, two
    sampled completions per row (majority vote) and one prompt over the model's context; a node dies
    mid-generation with its replica and a new one comes. Every request is answered exactly once."""
    # Two teacher nodes, each with room for one vLLM replica (the custom resource pins one per node).
    teacher_nodes = [cluster.add_node(num_cpus=2, resources={"teacher_slot": 1}) for _ in range(2)]
    cluster.wait_for_nodes()
    # 31 rows x 2 samples: more prompt tokens in flight than one engine step holds (what split prefills).
    rows = [{**row, "premise": f"{row['premise'][:-1]}, scene {i}."} for i in range(6) for row in NLI_ROWS][:31]
    long_row = {"premise": "word " * 3000, "hypothesis": "Something.", "label": 1}
    files = {
        split: jsonl(tmp_path / f"{split}.jsonl", split_rows)
        for split, split_rows in {"train": rows + [long_row], "val": NLI_ROWS[:1], "test": NLI_ROWS[:2]}.items()
    }
    command = [
        "generate",
        "tests/integration/tiny.yaml",
        f"output_dir={tmp_path / 'runs'}",
        "tag=nodes",
        f"ray.address={cluster.address}",
        "task.name=esnli",
        *(f"task.{split}_file={path}" for split, path in files.items()),
        "teacher.samples=2",
        "teacher.temperature=0.7",
        "teacher.max_new_tokens=32",
        "teacher.num_shots=3",
        "teacher.replicas=2",
        "teacher.replica_resources={teacher_slot: 1}",
        "teacher.batch_size=4",
        "teacher.rows_per_checkpoint=8",
    ]
    run = Background(*command, log=tmp_path / "first.log")
    # Both replicas hold their node's slot at the same time: generation runs on two nodes.
    run.wait_for(lambda: all(_available(node, "teacher_slot") == 0 for node in teacher_nodes), "both replicas")
    generations = lambda: list(tmp_path.glob("runs/*/teacher/generations/*.parquet"))  # noqa: E731
    run.wait_for(lambda: len(generations()) >= 2, "the first outputs")

    cluster.remove_node(teacher_nodes[0], allow_graceful=False)  # the node dies with its replica
    cluster.add_node(num_cpus=2, resources={"teacher_slot": 1})  # and, as an autoscaler would, a new one comes
    returncode, output = run.finish()
    # Ray Data restarts the lost replica on the new node and retries its unwritten batches, and the
    # run usually finishes by itself. When it gives up instead, the same command goes on from the
    # checkpointed request ids (as after a killed run: test_teacher_resume.py). Either way: each once.
    if returncode != 0:
        returncode, output = Background(*command, log=tmp_path / "again.log").finish()
    assert returncode == 0, output[-6000:]

    (run_dir,) = tmp_path.glob("runs/*")
    # Every request the engine was sent (two per row, none for the prompt too long) came back once: Ray
    # Data's checkpoints and the de-duplication are keyed by these ids, so they must survive ray.data.llm.
    requests = pq.read_table(run_dir / "teacher/requests", columns=["request_id", "reason"]).to_pylist()
    generated = pq.read_table(run_dir / "teacher/generations", columns=["request_id"])["request_id"].to_pylist()
    assert sorted(generated) == sorted(r["request_id"] for r in requests if not r["reason"])
    assert len(generated) == 2 * (len(rows) + 1 + 2)  # the train rows, and the val and test rows (scored)
    train_ids = pq.read_table(run_dir / "corpus/train.parquet", columns=["id"])["id"].to_pylist()
    kept = pq.read_table(run_dir / "teacher/distill.parquet").to_pylist()
    rejected = pq.read_table(run_dir / "teacher/rejects.parquet").to_pylist()
    assert sorted([r["id"] for r in kept] + [r["id"] for r in rejected]) == sorted(train_ids)
    too_long = [r for r in rejected if r["reason"] == "prompt_too_long"]
    assert len(too_long) == 1 and "exceeds teacher.max_model_len=2048" in too_long[0]["detail"]
    assert all(r["teacher_label"] in {"entailment", "neutral", "contradiction"} and r["samples"] == 2 for r in kept)
    assert all(r["vote_share"] in (0.5, 1.0) for r in kept)
    summary = json.loads((run_dir / "summary.json").read_text())["teacher"]
    assert summary["rows"] == len(rows) + 1 and summary["samples_per_row"] == 2
    assert summary["generated_tokens"] > 0 and "rejected_samples" in summary


def test_a_training_on_nodes_that_share_only_a_bucket_resumes_after_a_worker_node_dies(bucket, cluster, tmp_path):
    """The run directory in a bucket on an S3 server (moto's, the stand-in for a cloud store), the nodes each with
    their own cache folder: the workers read the tokenizer and the tokenized rows from the bucket, Ray Train
    keeps its checkpoints there, and a worker node lost mid-training costs only the steps since the last one."""

    # Two worker nodes with room for one Ray Train worker each (0.9 CPU); the head has room for one more.
    def node(name: str):
        own = {"RAYDSBS_CACHE_DIR": str(tmp_path / name / "cache"), "TMPDIR": str(tmp_path / name / "tmp")}
        (tmp_path / name / "tmp").mkdir(parents=True)
        return cluster.add_node(num_cpus=1, env_vars=own)

    worker_nodes = {name: node(name) for name in ("node-a", "node-b")}
    cluster.wait_for_nodes()
    runs = location(f"{bucket}/runs")
    run = Background(
        "train",
        "tests/integration/tiny.yaml",
        f"output_dir={runs}",
        "tag=nodes",
        f"ray.address={cluster.address}",
        "train.method=standard_finetune",
        "train.epochs=3",
        "train.eval_every_steps=4",
        "train.batch_size=16",
        log=tmp_path / "train.log",
    )
    run.wait_for(lambda: last_checkpoint_step(runs) >= 8, "a checkpoint at step 8 in the bucket")
    busy = [name for name, node in worker_nodes.items() if _available(node, "CPU") < 0.5]
    assert busy, "no Ray Train worker on a worker node"
    cluster.remove_node(worker_nodes[busy[0]], allow_graceful=False)
    node("node-c")  # the replacement node the workers restart on
    returncode, output = run.finish()
    assert returncode == 0, output[-6000:]
    assert "resumes from" in output, output[-5000:]  # the new worker group started from the checkpoint
    (folder,) = [p for p in runs.glob("*/student/standard_finetune-*") if (p / "training.json").is_file()]
    assert last_checkpoint_step(runs) == json.loads((folder / "training.json").read_text())["final_step"]
    assert committed(folder / "model")
    # The lost node's worker had read the tokenizer from the bucket into that node's own cache folder, and
    # the rows straight from the bucket: no node kept a copy of them.
    assert list(tmp_path.glob(f"{busy[0]}/cache/stored/tokenizer-*")), list(tmp_path.rglob("*"))[:50]
    assert not list(tmp_path.glob("**/*.parquet"))


def test_doctor_probes_the_storage_from_every_node_and_counts_the_gpus(bucket, cluster, tmp_path):
    """The doctor against a cluster where one node's S3 endpoint variable points nowhere: that node, and only
    that one, cannot use the bucket; and a config asking for GPUs the cluster lacks is named."""
    cluster.add_node(num_cpus=1)
    lost = cluster.add_node(num_cpus=1, env_vars={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})  # nothing listens
    cluster.wait_for_nodes()
    overrides = [f"ray.address={cluster.address}", f"output_dir={bucket}/runs", "train.use_gpu=true"]
    check = (  # the cluster part of `raydsbs doctor` (the whole doctor runs in tests/unit/test_doctor.py)
        "from raydsbs.resolve import load_config; from raydsbs.doctor import check_cluster, format_checks; "
        f"print(format_checks(check_cluster(load_config('tests/integration/tiny.yaml', {overrides!r}))))"
    )
    result = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, timeout=300)
    report = result.stdout
    assert result.returncode == 0 and report.endswith("0 ok, 2 to fix\n"), report + result.stderr[-3000:]
    (storage,) = [line for line in report.splitlines() if f"output_dir {bucket}/runs from 3 nodes" in line]
    assert storage.startswith("FAIL") and "1 cannot use it" in storage and f"node {lost.node_id[:8]}" in storage
    assert "same credential and endpoint variables on every node" in report
    (gpus,) = [line for line in report.splitlines() if "GPUs: the config holds 2 at once" in line]
    assert gpus.startswith("FAIL") and "the cluster has 0" in gpus
    assert not location(f"{bucket}/runs").iterdir()  # the probe files are gone
