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
questions); the caller then streams the long ones (rationales, completions)
into the output files, so memory does not grow with completion length.
"""

from __future__ import annotations

from collections import Counter
from itertools import groupby
from typing import NamedTuple

from raydsbs.config import TeacherConfig


class Sample(NamedTuple):
    """What the decisions need of one parsed sample: short fields only, so 100k rows fit in a few tens of MB."""

    request_id: str
    id: str
    sample: int
    question_key: int  # a hash of the normalized input, for de-duplication
    gold: str
    teacher_label: str
    teacher_correct: bool
    reason: str
    detail: str


def question_key(question: str) -> int:
    return hash(" ".join(question.lower().split()))


# The columns a Sample is read from.
DECISION_COLUMNS = ["request_id", "id", "sample", "question", "gold", "teacher_label", "teacher_correct", "reason", "detail"]
DISTILL_COLUMNS = ["id", "question", "gold", "rationale", "teacher_label", "teacher_correct", "vote_share", "samples"]
REJECT_COLUMNS = ["id", "reason", "detail", "completion"]


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


def select_rows(samples: list[Sample], rules, config: TeacherConfig) -> tuple[dict[str, dict], dict[str, dict]]:
    """(kept, rejected), each keyed by the request id of the sample that stands for its row.

    A kept entry holds teacher_label, teacher_correct, vote_share and samples;
    a rejected one reason, detail and teacher_correct. ``rules`` reads and
    scores answers (a task, or the authors' rules).
    """
    kept, rejected = {}, {}
    seen_inputs: set[int] = set()
    samples = sorted(samples, key=lambda s: (s.id, s.sample))
    for _, group in groupby(samples, key=lambda s: s.id):
        group = list(group)
        vote = _vote(group, rules)
        if vote is None:
            first = group[0]
            rejected[first.request_id] = {"reason": first.reason, "detail": first.detail,
                                          "teacher_correct": bool(first.teacher_correct)}
            continue
        chosen, share = vote
        correct = bool(rules.answers_match(chosen.teacher_label, chosen.gold))
        reason = detail = ""
        if config.require_gold_agreement and not correct:
            reason, detail = "disagrees_with_gold", f"teacher said {chosen.teacher_label!r}, gold is {chosen.gold!r}"
        elif config.deduplicate and chosen.question_key in seen_inputs:
            reason, detail = "duplicate_input", "the same input as an earlier row"
        seen_inputs.add(chosen.question_key)
        if reason:
            rejected[chosen.request_id] = {"reason": reason, "detail": detail, "teacher_correct": correct}
        else:
            kept[chosen.request_id] = {"teacher_label": chosen.teacher_label, "teacher_correct": correct,
                                       "vote_share": round(share, 4), "samples": len(group)}
    return kept, rejected
