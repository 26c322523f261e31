"""Named points at which a test can kill a whole run: ``RAYDSBS_KILL_AT=NAME`` (or ``NAME:N``, the N-th time)
SIGKILLs the process group of the process that passes point NAME, the driver and the Ray cluster it started.

Off unless the variable is set. Every output written through :func:`raydsbs.staging.written_whole` passes
``rename:<output name>`` just before it appears; loops that write a stage's output piece by piece pass
their own points. The kill-anywhere test (tests/integration/test_kill_anywhere.py) kills a run at each of
them in turn and checks that the reruns end with the outputs of a run never killed.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "RAYDSBS_KILL_AT"
_passed: Counter[str] = Counter()


def passing(name: str) -> None:
    """Kill the run here if ``RAYDSBS_KILL_AT`` names this point (and this is the time it names)."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, times = wanted.rpartition(":")
    if not times.isdigit():  # no count given: the first time
        point, times = wanted, "1"
    if point != name:
        return
    _passed[name] += 1
    if _passed[name] == int(times):
        os.killpg(os.getpgrp(), signal.SIGKILL)
