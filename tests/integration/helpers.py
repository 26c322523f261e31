"""Helpers shared by the integration tests."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psutil

from raydsbs.storage import cache_dir

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # ray, raydsbs and python of this environment


# Premise / hypothesis / label rows in the NLI datasets' own columns (label 0 entailment, 1 neutral, 2 contradiction).
NLI_ROWS = [
    {"premise": "A man is playing a guitar on stage.", "hypothesis": "A man is performing music.", "label": 0},
    {"premise": "Two dogs run across a snowy field.", "hypothesis": "The dogs are sleeping indoors.", "label": 2},
    {"premise": "A girl reads a book in the library.", "hypothesis": "The girl is studying for a test.", "label": 1},
    {"premise": "A chef cuts vegetables in a kitchen.", "hypothesis": "Someone is preparing food.", "label": 0},
    {"premise": "People walk along a beach at sunset.", "hypothesis": "It is midnight.", "label": 2},
    {"premise": "A boy kicks a ball in the park.", "hypothesis": "The boy plays for a school team.", "label": 1},
]


def jsonl(path: Path, rows: list[dict]) -> str:
    """Rows written as a JSONL file (a user's local data); its path."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def last_checkpoint_step(out: Path, training: str = "*") -> int:
    """The step of the latest checkpoint Ray Train has registered for the trainings named like ``training``
    in the run directories under ``out`` (files on disk alone may not be registered yet)."""
    steps = []
    for snapshot in out.glob(f"*/student/ray/{training}/checkpoint_manager_snapshot.json"):
        with suppress(json.JSONDecodeError, KeyError, TypeError):  # being written, or nothing registered yet
            steps.append(json.loads(snapshot.read_text())["latest_checkpoint_result"]["metrics"]["step"])
    return max(steps, default=0)


class Background:
    """``python -m raydsbs ARGS`` running on its own, in a process group of its own, its output going to a file.

    Never a pipe: a test that waits on the run's files without reading a pipe lets it fill (64 KiB of
    Ray Data's progress lines), and the run then blocks on its next print forever."""

    def __init__(self, *args: str, log: Path, env: dict | None = None):
        self.log = log
        with open(log, "w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "raydsbs", *args],
                cwd=REPO,
                stdout=out,
                env=env,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )

    def output(self, tail: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-tail:]

    def wait_for(self, condition, what: str, timeout: float = 300) -> None:
        """Until ``condition()`` holds; fails with the run's output if the run ends or time runs out first (or
        ``condition`` raises: the run is killed then too, not left running past the test)."""
        deadline = time.monotonic() + timeout
        try:
            while not condition():
                if self.process.poll() is not None:
                    raise AssertionError(f"the run ended before {what}:\n{self.output()}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"timed out waiting for {what}:\n{self.output()}")
                time.sleep(0.5)
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL the driver and everything in its process group (a local Ray cluster it started too)."""
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def interrupt(self, timeout: float = 120) -> int:
        """Ctrl-C: SIGINT to the command, which stops by itself (SIGKILL after ``timeout``); its return code."""
        with suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"still running {timeout:.0f} s after Ctrl-C:\n{self.output()}") from None

    def finish(self, timeout: float = 900) -> tuple[int, str]:
        """(return code, whole output) once the run ends by itself."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the run did not end in {timeout:.0f} s:\n{self.output()}") from None
        return self.process.returncode, self.log.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class TokenHead:
    """A Ray head on 127.0.0.1 started by cluster/local-head.sh, with token authentication on."""

    dashboard: str  # http://127.0.0.1:PORT: the jobs API
    gcs: str  # 127.0.0.1:PORT: what ray.init and `raydsbs doctor` connect to
    token: str
    home: Path  # HOME of the clients: no ~/.ray/auth_token of the machine's user leaks in

    def env(self, token: str | None = "cluster's") -> dict:
        """A user's shell: PATH to this venv, and the cluster's token, another token, or (None) none."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
        # the converted bundled teacher stays where the other tests find it, not under the fake HOME
        env.setdefault("RAYDSBS_CACHE_DIR", str(cache_dir()))
        # and so do DeepSpeed's compiled ops (cpu_adam): built once per machine, not once per test session
        env.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "torch_extensions"))
        env.update(PATH=f"{BIN}:{env['PATH']}", HOME=str(self.home))
        if token is not None:
            env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token if token == "cluster's" else token)
        return env

    def ray(self, *args: str, token: str | None = "cluster's", timeout: float = 120) -> subprocess.CompletedProcess:
        """The `ray` command line against this head, e.g. ``head.ray("job", "list")``."""
        args = [*args[:2], "--address", self.dashboard, *args[2:]] if args[0] == "job" else list(args)
        for attempt in range(3):
            result = subprocess.run(
                [str(BIN / "ray"), *args],
                env=self.env(token),
                cwd=REPO,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
            # A head on a loaded machine may answer before its job agent has registered; Ray says to try again.
            if "No available agent to submit job" not in result.stdout or attempt == 2:
                return result
            time.sleep(10)
        return result


@contextmanager
def token_head(home: Path, num_cpus: int = 4):
    """Start a head as a user would (cluster/local-head.sh), wait until its jobs API answers, stop it after."""
    temp_dir = tempfile.mkdtemp(prefix="rj", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    head = TokenHead(f"http://127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}", secrets.token_hex(16), home)
    env = head.env()
    env.update(RAYDSBS_HEAD_PORT=head.gcs.rsplit(":", 1)[1], RAYDSBS_DASHBOARD_PORT=head.dashboard.rsplit(":", 1)[1])
    log_path = home / "head.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                "bash",
                str(REPO / "cluster" / "local-head.sh"),
                f"--num-cpus={num_cpus}",
                f"--temp-dir={temp_dir}",
                # not Ray's fixed default (52365): another Ray on the machine (a benchmark) may hold it
                f"--dashboard-agent-listen-port={free_port()}",
                "--block",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 120
            while head.ray("job", "list").returncode != 0:
                assert process.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "the head did not come up"
                time.sleep(2)
            yield head
        finally:
            # The head and every Ray process it started; workers leave its process group, not its tree.
            tree = psutil.Process(process.pid).children(recursive=True)
            os.killpg(process.pid, signal.SIGKILL)
            for child in tree:
                with suppress(psutil.NoSuchProcess):
                    child.kill()
            process.wait()
            shutil.rmtree(temp_dir, ignore_errors=True)


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Each scalar tag's (step, value) points as TensorBoard shows them (its own reader: a resumed run's purge
    applied)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def wandb_offline_runs(folder: Path) -> list[dict]:
    """The runs W&B wrote offline under ``folder`` (``offline-run-*/run-<id>.wandb``), read from W&B's own
    record log: 32 KiB blocks of chunks (a 7-byte header: CRC, length, FULL/FIRST/MIDDLE/LAST), each record a
    protobuf ``Record``. Each run: id, name, group, project, config, history ({step: {key: value}}), summary."""
    import struct

    from wandb.proto import wandb_internal_pb2

    def items(updates) -> dict:
        return {"/".join(item.nested_key) or item.key: json.loads(item.value_json) for item in updates}

    runs = []
    for path in sorted(folder.glob("offline-run-*/run-*.wandb")):
        data, pending, position = path.read_bytes(), b"", 7  # past the file's header (":W&B", magic, version)
        run = {"history": {}, "summary": {}, "config": {}}
        while position + 7 <= len(data):
            if 32768 - position % 32768 < 7:  # a block's tail too short for a header is padding
                position += 32768 - position % 32768
                continue
            _, length, kind = struct.unpack("<IHB", data[position : position + 7])
            if kind == 0:
                break
            pending += data[position + 7 : position + 7 + length]
            position += 7 + length
            if kind not in (1, 4):  # FULL or LAST: the record is whole
                continue
            record = wandb_internal_pb2.Record.FromString(pending)
            pending, which = b"", record.WhichOneof("record_type")
            if which == "run":
                run.update(id=record.run.run_id, name=record.run.display_name, group=record.run.run_group)
                run.update(project=record.run.project)
                run["config"].update(items(record.run.config.update))
            elif which == "history":
                values = items(record.history.item)
                run["history"].setdefault(values["_step"], {}).update(values)
            elif which == "summary":
                run["summary"].update(items(record.summary.update))
        runs.append(run)
    return runs
