"""Several Ray nodes on one machine (ray.cluster_utils.Cluster), each a separate raylet:
teacher replicas spread over the nodes, a node lost mid-generation costs no row and
repeats none, and a training whose worker node dies resumes from its checkpoint."""

from __future__ import annotations

import json

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from tests.integration.helpers import Background, last_checkpoint_step

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    ray.init(address=cluster.address)  # this process only watches: it reserves nothing
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def _available(node, resource: str) -> float:
    from ray._private.state import available_resources_per_node

    return available_resources_per_node().get(node.node_id, {}).get(resource, 0.0)


def test_teacher_replicas_spread_over_nodes_and_a_lost_node_costs_no_row(cluster, tmp_path):
    # Two teacher nodes, each with room for one vLLM replica (the custom resource pins one per node).
    teacher_nodes = [cluster.add_node(num_cpus=2, resources={"teacher_slot": 1}) for _ in range(2)]
    cluster.wait_for_nodes()
    command = ["generate", "jobs/quickstart.yaml", f"output_dir={tmp_path}", "tag=nodes", f"ray.address={cluster.address}",
               "task.num_train=64", "task.num_val=8", "teacher.replicas=2", "teacher.replica_resources={teacher_slot: 1}",
               "teacher.batch_size=4", "teacher.rows_per_checkpoint=8", "teacher.max_new_tokens=32"]
    run = Background(*command, log=tmp_path / "first.log")
    # Both replicas hold their node's slot at the same time: generation runs on two nodes.
    run.wait_for(lambda: all(_available(node, "teacher_slot") == 0 for node in teacher_nodes), "both replicas")
    generations = lambda: list(tmp_path.glob("nodes-*/teacher/generations/*.parquet"))  # noqa: E731
    run.wait_for(lambda: len(generations()) >= 2, "the first outputs")

    cluster.remove_node(teacher_nodes[0], allow_graceful=False)  # the node dies with its replica
    cluster.add_node(num_cpus=2, resources={"teacher_slot": 1})  # and, as an autoscaler would, a new one comes
    returncode, output = run.finish()
    # Ray Data restarts the lost replica on the new node and retries its unwritten batches, and the
    # run usually finishes by itself. When it gives up instead, the same command goes on from the
    # checkpointed ids (as after a killed run: test_teacher_resume.py). Either way: every row once.
    if returncode != 0:
        returncode, output = Background(*command, log=tmp_path / "again.log").finish()
    assert returncode == 0, output[-6000:]

    (run_dir,) = tmp_path.glob("nodes-*")
    train_ids = pq.read_table(run_dir / "corpus/train.parquet", columns=["id"])["id"].to_pylist()
    generated = pads.dataset(run_dir / "teacher/generations", format="parquet").to_table(columns=["id"])["id"]
    assert sorted(generated.to_pylist()) == sorted(train_ids)  # every row once: none lost, none twice
    kept = pq.read_table(run_dir / "teacher/distill.parquet", columns=["id"])["id"].to_pylist()
    rejected = pq.read_table(run_dir / "teacher/rejects.parquet", columns=["id"])["id"].to_pylist()
    assert sorted(kept + rejected) == sorted(train_ids)


def test_a_training_whose_worker_node_dies_resumes_from_its_checkpoint(cluster, tmp_path):
    # Two worker nodes with room for one Ray Train worker each (0.9 CPU); the head has room for one more.
    worker_nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    run = Background("train", "jobs/quickstart.yaml", f"output_dir={tmp_path}", "tag=nodes", f"ray.address={cluster.address}",
                     "train.method=standard_finetune", "train.epochs=3", "train.eval_every_steps=4",
                     "train.batch_size=16", log=tmp_path / "train.log")
    run.wait_for(lambda: last_checkpoint_step(tmp_path) >= 8, "a checkpoint at step 8")
    busy = [node for node in worker_nodes if _available(node, "CPU") < 0.5]
    assert busy, "no Ray Train worker on a worker node"
    cluster.remove_node(busy[0], allow_graceful=False)
    cluster.add_node(num_cpus=1)  # the replacement node the workers restart on
    returncode, output = run.finish()
    assert returncode == 0, output[-6000:]
    assert "resumes from" in output, output[-5000:]  # the new worker group started from the checkpoint
    (folder,) = [p for p in tmp_path.glob("*/student/standard_finetune-*") if (p / "training.json").is_file()]
    assert last_checkpoint_step(tmp_path) == json.loads((folder / "training.json").read_text())["final_step"]
