"""The progress line: its rate and time left, how often it is written, and what a resumed run counts."""

from __future__ import annotations

from raydsbs.progress import ProgressLine


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_line_every_interval_with_the_rate_and_the_time_left_and_one_at_the_end():
    clock, lines = Clock(), []
    progress = ProgressLine("train", "step", 80, every_s=30, log=lines.append, clock=clock)
    for _ in range(40):
        clock.now += 2.0
        progress.advance()
    assert lines == ["train | step 15/80 | 0.5 step/s | ETA 0:02:10", "train | step 30/80 | 0.5 step/s | ETA 0:01:40"]
    progress.finish()
    assert lines[-1] == "train | step 40/80 | 0.5 step/s | ETA 0:01:20"


def test_a_resumed_run_counts_its_own_rate_and_an_unknown_total_has_no_eta():
    clock, lines = Clock(), []
    resumed = ProgressLine("teacher", "sample", 1000, done=600, every_s=10, log=lines.append, clock=clock)
    clock.now = 10.0
    resumed.advance(100)
    assert lines == ["teacher | sample 700/1000 | 10 sample/s | ETA 0:00:30"]
    unknown = ProgressLine("evaluate", "row", None, every_s=10, log=lines.append, clock=clock)
    clock.now = 30.0
    unknown.advance(40)
    assert lines[-1] == "evaluate | row 40 | 2 row/s"
    quiet = ProgressLine("evaluate", "row", 5, log=lines.append, clock=clock)
    quiet.finish()  # nothing counted: nothing written
    assert len(lines) == 2
