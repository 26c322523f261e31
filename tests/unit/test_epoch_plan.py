"""A worker's epoch over windows of its rows: as many batches on every rank, and one window is a whole shuffle."""

from __future__ import annotations

from raydsbs.student import ingest
from raydsbs.student.batching import epoch_batches
from raydsbs.student.ingest import EpochPlan


def test_an_epoch_plan_gives_every_rank_as_many_batches_and_one_window_is_a_whole_shuffle(monkeypatch):
    monkeypatch.setattr(ingest, "WINDOW_ROWS", 16)
    lengths = [(i * 37) % 101 for i in range(70)]
    plans = [EpochPlan(70, 4, rank, 2, seed=3, lengths=lengths) for rank in range(2)]
    assert len(plans[0]) == len(plans[1]) and [len(b) for b in plans[0]] == [len(b) for b in plans[1]]
    seen = [i for plan in plans for batch in plan for i in batch]
    assert set(seen) == set(range(70))  # every row once (and a few again, to pad a window to the ranks)
    for plan in plans:  # a batch never mixes two windows
        assert all(len({i // 16 for i in batch}) == 1 for batch in plan)
    # at most one window: the plan of a shuffle of everything, as before windows
    single = EpochPlan(16, 4, 1, 2, seed=3, lengths=lengths[:16])
    assert list(single) == epoch_batches(16, 4, 1, 2, seed=3, lengths=lengths[:16])
