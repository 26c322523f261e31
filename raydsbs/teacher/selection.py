"""From parsed samples to the distillation set: vote, filter, de-duplicate.

Every sample of a row was parsed on its own (the pipeline's parse stage).
Per row, in order:

1. the label is the majority of its usable samples' labels (self-consistency;
   ties go to the label seen first), the rationale that of the first sample
   that gave it; a row with no usable sample takes its first sample's reason;
2. ``teacher.require_gold_agreement``: a label that disagrees with the gold
   label drops the row (``disagrees_with_gold``);
3. ``teacher.deduplicate``: a row whose input repeats an earlier row's is
   dropped (``duplicate_input``).

:func:`select_rows` decides on the short columns only (ids, labels, reasons,
input hashes), streaming over rows sorted by id. The teacher pipeline calls it
on one bucket of samples at a time: a bucket holds every sample whose input
hashes to it, so a row's samples and any repeat of its input meet there, and
the driver's memory is bounded by the bucket, not by the corpus.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import groupby
from typing import NamedTuple

from raydsbs.config import TeacherConfig


class Sample(NamedTuple):
    """What the decisions need of one parsed sample: short fields only (the texts stay on disk)."""

    position: int  # the sample's row in its bucket
    request_id: str
    id: str
    sample: int
    question_key: int  # a hash of the normalized input, for de-duplication
    gold: str
    teacher_label: str
    teacher_correct: bool
    reason: str
    detail: str
    split: str = "train"  # train: a candidate for the distillation set; val, test: answered to score the teacher


class Decision(NamedTuple):
    """What becomes of one row: kept (reason "") or rejected, and the sample whose label and texts go out for it."""

    sample: Sample
    reason: str
    detail: str
    teacher_correct: bool
    vote_share: float
    samples: int


def _vote(samples: list[Sample], rules) -> tuple[Sample, float] | None:
    """The sample that stands for the majority label, and the share of usable samples that voted for it."""
    usable = [s for s in samples if not s.reason]
    if not usable:
        return None
    key = rules.normalize if hasattr(rules, "normalize") else (lambda label: label)
    votes = Counter(key(s.teacher_label) for s in usable)
    first_of: dict = {}
    for position, s in enumerate(usable):
        first_of.setdefault(key(s.teacher_label), (position, s))
    winner = max(votes, key=lambda label: (votes[label], -first_of[label][0]))
    return first_of[winner][1], votes[winner] / len(usable)


def select_rows(samples: Iterable[Sample], rules, config: TeacherConfig) -> Iterator[Decision]:
    """One decision per row, streaming: ``samples`` come sorted by (id, sample), so only one row's samples
    and the set of input hashes seen are held. ``rules`` reads and scores answers (a task, or the authors')."""
    seen_inputs: set[int] = set()
    for _, group in groupby(samples, key=lambda s: s.id):
        group = list(group)
        vote = _vote(group, rules)
        if vote is None:
            first = group[0]
            yield Decision(first, first.reason, first.detail, bool(first.teacher_correct), 0.0, len(group))
            continue
        chosen, share = vote
        correct = bool(rules.answers_match(chosen.teacher_label, chosen.gold))
        reason = detail = ""
        if config.require_gold_agreement and not correct:
            reason, detail = "disagrees_with_gold", f"teacher said {chosen.teacher_label!r}, gold is {chosen.gold!r}"
        elif config.deduplicate and chosen.question_key in seen_inputs:
            reason, detail = "duplicate_input", "the same input as an earlier row"
        seen_inputs.add(chosen.question_key)
        yield Decision(chosen, reason, detail, correct, round(share, 4), len(group))
