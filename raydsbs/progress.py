"""A greppable line on how a long loop goes, with its rate and the time left::

    train | step 40/80 | 0.52 step/s | ETA 0:01:17
    teacher | sample 1536/10000 | 12.4 sample/s | ETA 0:11:22
    evaluate | row 64/136 | 3.1 row/s | ETA 0:00:23

written at most every ``RAYDSBS_PROGRESS_EVERY_S`` seconds (30 by default) and once at the end: a line, not a
bar, so that a CI log or ``ray job logs`` holds one line per interval. Only the process that owns the count
writes it (rank 0 of a training, the teacher's one parser, the scorer).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import timedelta

EVERY_S = float(os.environ.get("RAYDSBS_PROGRESS_EVERY_S", "30"))


def log_from_worker() -> None:
    """In a Ray worker process (a training worker, an actor), raydsbs's lines go to its stderr, which Ray
    hands to the driver's log (Ray's own INFO lines stay out)."""
    package_logger = logging.getLogger("raydsbs")
    if not package_logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s | %(message)s", datefmt="%H:%M:%S"))
        package_logger.addHandler(handler)
        package_logger.setLevel(logging.INFO)
        package_logger.propagate = False


class ProgressLine:
    """Counts ``unit``s of ``stage`` towards ``total`` (None: unknown, no ETA), ``done`` of them before this
    process started (a resumed run: its rate counts only what this process does)."""

    def __init__(
        self,
        stage: str,
        unit: str,
        total: int | None,
        done: int = 0,
        every_s: float | None = None,
        log: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.stage, self.unit, self.total, self.done = stage, unit, total, done
        self.every_s = EVERY_S if every_s is None else every_s
        self.log = log or logging.getLogger(f"raydsbs.{stage}").info
        self.clock = clock
        self.started = self.last = clock()
        self.counted = 0

    def advance(self, count: int = 1) -> None:
        self.done += count
        self.counted += count
        if self.clock() - self.last >= self.every_s:
            self.write()

    def finish(self) -> None:
        """The last line (also when no interval has passed)."""
        if self.counted:
            self.write()

    def line(self) -> str:
        seconds = self.clock() - self.started
        rate = self.counted / seconds if seconds > 0 else 0.0
        parts = [self.stage, f"{self.unit} {self.done}" + (f"/{self.total}" if self.total is not None else "")]
        parts.append(f"{rate:.3g} {self.unit}/s")
        if self.total is not None and rate > 0:
            parts.append(f"ETA {timedelta(seconds=round(max(0, self.total - self.done) / rate))}")
        return " | ".join(parts)

    def write(self) -> None:
        self.log(self.line())
        self.last = self.clock()
