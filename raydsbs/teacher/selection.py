"""From parsed samples to the distillation set: vote, filter, de-duplicate.

Every sample of a row was parsed on its own (see ``parse_samples`` in the
pipeline). Per row, in order:

1. the label is the majority of its usable samples' labels (self-consistency;
   ties go to the label seen first), the rationale that of the first sample
   that gave it; a row with no usable sample takes its first sample's reason;
2. ``teacher.require_gold_agreement``: a label that disagrees with the gold
   label drops the row (``disagrees_with_gold``);
3. ``teacher.deduplicate``: a row whose input repeats an earlier row's is
   dropped (``duplicate_input``).

Rows come back in id order, each kept row with ``vote_share`` (the fraction
of usable samples that agreed).
"""

from __future__ import annotations

from collections import Counter
from itertools import groupby

from raydsbs.config import TeacherConfig

DISTILL_COLUMNS = ["id", "question", "gold", "rationale", "teacher_label", "teacher_correct", "vote_share", "samples"]
REJECT_COLUMNS = ["id", "reason", "detail", "completion"]


def _vote(samples: list[dict], rules) -> tuple[dict, float] | None:
    """The sample that stands for the majority label, and the share of usable samples that voted for it."""
    usable = [s for s in samples if not s["reason"]]
    if not usable:
        return None
    key = (lambda label: label) if not hasattr(rules, "normalize") else rules.normalize
    votes = Counter(key(s["teacher_label"]) for s in usable)
    order = {}
    for s in usable:
        order.setdefault(key(s["teacher_label"]), s)
    winner = max(votes, key=lambda label: (votes[label], -usable.index(order[label])))
    return order[winner], votes[winner] / len(usable)


def select_rows(samples: list[dict], rules, config: TeacherConfig) -> tuple[list[dict], list[dict]]:
    """(kept rows, rejected rows) from every parsed sample; ``rules`` reads and scores answers."""
    kept, rejected = [], []
    seen_inputs: set[str] = set()
    samples = sorted(samples, key=lambda s: (s["id"], s["sample"]))
    for row_id, group in groupby(samples, key=lambda s: s["id"]):
        group = list(group)
        first = group[0]
        vote = _vote(group, rules)
        if vote is None:
            rejected.append({"id": row_id, "reason": first["reason"], "detail": first["detail"],
                             "completion": first["completion"], "teacher_correct": bool(first["teacher_correct"])})
            continue
        chosen, share = vote
        correct = bool(rules.answers_match(chosen["teacher_label"], chosen["gold"]))
        reason, detail = "", ""
        question_key = " ".join(chosen["question"].lower().split())
        if config.require_gold_agreement and not correct:
            reason, detail = "disagrees_with_gold", f"teacher said {chosen['teacher_label']!r}, gold is {chosen['gold']!r}"
        elif config.deduplicate and question_key in seen_inputs:
            reason, detail = "duplicate_input", "the same input as an earlier row"
        seen_inputs.add(question_key)
        if reason:
            rejected.append({"id": row_id, "reason": reason, "detail": detail, "completion": chosen["completion"],
                             "teacher_correct": correct})
            continue
        kept.append({"id": row_id, "question": chosen["question"], "gold": chosen["gold"],
                     "rationale": chosen["rationale"], "teacher_label": chosen["teacher_label"],
                     "teacher_correct": correct, "vote_share": round(share, 4), "samples": len(group)})
    return kept, rejected
