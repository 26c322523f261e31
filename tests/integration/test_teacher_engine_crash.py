"""A teacher engine that dies the same way on every try: the real vLLM CPU engine of the bundled teacher,
its engine-core process SIGKILLed (as the kernel's OOM killer would) each time it has generated some rows.
The stage must end, with an error, after ``teacher.max_engine_restarts`` restarts, and keep what it wrote."""

from __future__ import annotations

import os
import re
import signal
import time
from contextlib import suppress

import pytest

from tests.integration.helpers import Background

pytestmark = pytest.mark.integration

# vLLM's engine core logs this once it has loaded the model and is about to take requests.
ENGINE_READY = re.compile(r"\(EngineCore pid=(\d+)\).*init engine .* took")


def test_an_engine_that_always_dies_ends_the_stage_after_its_restarts_and_keeps_the_rows_written(tmp_path):
    restarts = 1
    run = Background(
        "generate",
        "tests/integration/tiny.yaml",
        f"output_dir={tmp_path}",
        "tag=crash",
        "teacher.rows_per_checkpoint=8",
        "teacher.batch_size=8",  # rows reach generations/ soon after an engine starts
        "teacher.max_new_tokens=16",
        "teacher.num_shots=1",
        f"teacher.max_engine_restarts={restarts}",
        log=tmp_path / "generate.log",
    )
    generations = lambda: sorted(tmp_path.glob("crash-*/teacher/generations/*.parquet"))  # noqa: E731
    seen_ready: dict[str, int] = {}  # engine core pid -> files written when it was first seen ready
    killed: list[str] = []

    def kill_generating_engines() -> bool:
        """Kill each engine core once it has written rows since it became ready (so it dies generating, not
        starting); True once the run has ended."""
        for pid in ENGINE_READY.findall(run.log.read_text(errors="replace")):
            seen_ready.setdefault(pid, len(generations()) if seen_ready else 0)  # the first engine: from 0
            if pid not in killed and len(generations()) > seen_ready[pid]:
                with suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
                killed.append(pid)
        return run.process.poll() is not None

    run.wait_for(generations, "the first rows were written", timeout=400)
    written = generations()
    deadline = time.monotonic() + 400
    try:
        while not kill_generating_engines():
            assert time.monotonic() < deadline, f"the stage did not end in 400 s:\n{run.output()}"
            time.sleep(0.3)
    finally:
        run.kill()
    code, output = run.process.returncode, run.log.read_text(errors="replace")
    assert code != 0
    assert len(killed) == restarts + 1, (killed, output[-6000:])  # the first engine and each restart, no more
    assert set(written) <= set(generations())  # the rows written before the crashes are kept for a rerun
    (run_dir,) = (path for path in tmp_path.iterdir() if path.is_dir())
    assert not (run_dir / "teacher/generations/_SUCCESS").exists()
    assert not (run_dir / "teacher/distill.parquet").exists()
    assert "teacher.max_engine_restarts" in output  # what failed, and what to change
