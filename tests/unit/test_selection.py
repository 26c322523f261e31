"""From parsed samples to the distillation set: self-consistency vote, gold filter, de-duplication."""

from __future__ import annotations

from raydsbs.config import TeacherConfig
from raydsbs.tasks import get_task
from raydsbs.teacher.selection import select_rows


def _sample(row_id, sample, label, rationale="r", reason="", question=None, gold="7"):
    return {"id": row_id, "sample": sample, "question": question or f"q {row_id}", "gold": gold, "completion": f"c{sample}",
            "rationale": rationale, "teacher_label": label, "teacher_correct": label == gold, "reason": reason, "detail": ""}


def test_majority_vote_picks_the_label_and_the_first_rationale_that_gave_it():
    task = get_task("arith")
    samples = [_sample("a", 0, "5", "five"), _sample("a", 1, "7.0", "seven"), _sample("a", 2, "7", "seven again"),
               _sample("a", 3, "", reason="no_answer_stated")]
    kept, rejected = select_rows(samples, task, TeacherConfig(samples=4, temperature=0.7))
    assert rejected == []
    (row,) = kept
    assert (row["teacher_label"], row["rationale"], row["vote_share"], row["samples"]) == ("7.0", "seven", 0.6667, 4)
    assert row["teacher_correct"]


def test_ties_go_to_the_label_seen_first_and_unusable_rows_keep_their_reason():
    task = get_task("arith")
    samples = [_sample("b", 1, "3"), _sample("b", 0, "4"), _sample("c", 0, "", reason="empty_completion"),
               _sample("c", 1, "", reason="no_answer_stated")]
    kept, rejected = select_rows(samples, task, TeacherConfig(samples=2, temperature=0.7))
    assert [r["teacher_label"] for r in kept] == ["4"]
    assert [(r["id"], r["reason"]) for r in rejected] == [("c", "empty_completion")]


def test_gold_filter_and_duplicate_inputs():
    task = get_task("arith")
    samples = [_sample("a", 0, "7", question="Same  question?"), _sample("b", 0, "7", question="same question?"),
               _sample("c", 0, "6")]
    kept, rejected = select_rows(samples, task, TeacherConfig(require_gold_agreement=True))
    assert [r["id"] for r in kept] == ["a"]
    assert [(r["id"], r["reason"]) for r in rejected] == [("b", "duplicate_input"), ("c", "disagrees_with_gold")]
    kept, rejected = select_rows(samples, task, TeacherConfig(deduplicate=False))
    assert [r["id"] for r in kept] == ["a", "b", "c"] and rejected == []
