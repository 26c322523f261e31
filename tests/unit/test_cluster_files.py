"""Every file in cluster/ and jobs/ is valid for the tool that reads it, and every
cluster file starts Ray with token authentication on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import ray
import yaml

from raydsbs.resolve import load_config, with_overrides
from raydsbs.student.presets import PRESETS

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER_FILES = sorted((ROOT / "cluster").glob("*.yaml"))
KUBERAY_FILES = sorted((ROOT / "cluster" / "kuberay").glob("*.yaml"))
JOB_FILES = sorted((ROOT / "jobs").glob("*.yaml"))


def test_there_are_cluster_and_job_files():
    assert {path.name for path in LAUNCHER_FILES} >= {"aws.yaml", "gcp.yaml"}
    assert {path.name for path in KUBERAY_FILES} >= {"raycluster.yaml", "rayjob.yaml"}
    assert {path.stem for path in JOB_FILES} >= {"quickstart", "svamp", "cqa", "esnli", "anli"}


@pytest.mark.parametrize("path", LAUNCHER_FILES, ids=lambda path: path.name)
def test_launcher_config_is_valid_with_token_auth(path):
    from ray.autoscaler._private.util import fillout_defaults, validate_config

    config = yaml.safe_load(path.read_text())
    validate_config(fillout_defaults(config))  # Ray's own schema, as `ray up` checks it
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    ray_starts = [command for command in starts if "ray start" in command]
    assert len(ray_starts) == 2
    for command in ray_starts:
        assert "RAY_AUTH_MODE=token" in command, command
    head = next(command for command in ray_starts if "--head" in command)
    assert "--dashboard-host=127.0.0.1" in head  # reached through `ray dashboard`'s SSH tunnel
    assert any("auth_token" in target for target in config["file_mounts"])


def _containers(document: dict) -> list[tuple[str, dict]]:
    """(where, container) for every container of a RayCluster or RayJob, the job's submitter included."""
    spec = document["spec"]
    cluster = spec.get("rayClusterSpec", spec)
    templates = [("head", cluster["headGroupSpec"]["template"])]
    templates += [(group["groupName"], group["template"]) for group in cluster["workerGroupSpecs"]]
    if "submitterPodTemplate" in spec:
        templates.append(("submitter", spec["submitterPodTemplate"]))
    return [(where, container) for where, template in templates for container in template["spec"]["containers"]]


@pytest.mark.parametrize("path", KUBERAY_FILES, ids=lambda path: path.name)
def test_kuberay_manifests_have_token_auth_everywhere(path):
    documents = [document for document in yaml.safe_load_all(path.read_text()) if document]
    ray_documents = [document for document in documents if document["kind"] in ("RayCluster", "RayJob")]
    for document in ray_documents:
        assert document["apiVersion"] == "ray.io/v1"
        cluster = document["spec"].get("rayClusterSpec", document["spec"])
        assert cluster["rayVersion"] == ray.__version__
        assert cluster["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP"
        for where, container in _containers(document):
            env = {item["name"]: item for item in container.get("env", [])}
            assert env.get("RAY_AUTH_MODE", {}).get("value") == "token", f"{path.name} {where}"
            token = env.get("RAY_AUTH_TOKEN", {})
            assert "secretKeyRef" in token.get("valueFrom", {}), f"{path.name} {where}: token not from a Secret"
            for item in env.values():  # no secret written into the manifest itself
                assert not ("TOKEN" in item["name"] or "KEY" in item["name"]) or "valueFrom" in item
            if where != "submitter":  # the head runs the driver, which loads gated tokenizers and configs too
                assert "secretKeyRef" in env.get("HF_TOKEN", {}).get("valueFrom", {}), f"{path.name} {where}: HF_TOKEN"


def test_local_head_script_turns_token_auth_on():
    script = (ROOT / "cluster" / "local-head.sh").read_text()
    assert "export RAY_AUTH_MODE=token" in script
    assert "--dashboard-host=127.0.0.1" in script and "--node-ip-address=127.0.0.1" in script


@pytest.mark.parametrize("path", JOB_FILES, ids=lambda path: path.name)
def test_job_config_is_valid_and_documented(path):
    config = load_config(path)  # every key known, every value allowed, exemplars enough for num_shots
    header = path.read_text().split("\ntag:")[0].lower()
    assert "resources" in header and "cost" in header, f"{path.name}: say what it needs and roughly what it costs"
    for key, values in config.sweep.grid.items():  # each sweep value is itself a valid config
        for value in values:
            with_overrides(config, {key: value})
    preset = PRESETS[config.student.preset]
    if config.train.use_gpu and preset.gpus:
        assert config.train.num_workers >= preset.gpus and config.train.zero_stage >= preset.zero_stage, (
            f"{path.name}: {config.student.preset} needs {preset.gpus} GPUs and ZeRO {preset.zero_stage}"
        )
    if config.teacher.use_gpu:
        assert config.teacher.tensor_parallel_size <= 8, "tensor parallelism spans one node's GPUs (8 at most)"
        # a cluster job names storage every node reaches (a relative one is refused inside a job)
        assert "://" in config.output_dir or config.output_dir.startswith("/"), f"{path.name}: {config.output_dir}"
        assert re.search(r"ray job submit .*raydsbs run jobs/" + path.name, path.read_text(), re.S)
