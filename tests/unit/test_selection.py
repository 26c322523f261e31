"""From parsed samples to the distillation set: self-consistency vote, gold filter, de-duplication."""

from __future__ import annotations

from raydsbs.config import TeacherConfig
from raydsbs.data.checks import question_key
from raydsbs.tasks import get_task
from raydsbs.teacher.selection import Sample, select_rows


def _sample(row_id, sample, label, reason="", question=None, gold="7"):
    return Sample(
        0,
        f"{row_id}#{sample}",
        row_id,
        sample,
        question_key(question or f"q {row_id}"),
        gold,
        label,
        label == gold,
        reason,
        "",
    )


def select(samples, task, config) -> tuple[dict, dict]:
    """(kept, rejected) by the request id of the sample that stands for each row; samples come in any order."""
    kept, rejected = {}, {}
    for decision in select_rows(sorted(samples, key=lambda s: (s.id, s.sample)), task, config):
        entry = {
            "teacher_label": decision.sample.teacher_label,
            "teacher_correct": decision.teacher_correct,
            "vote_share": decision.vote_share,
            "samples": decision.samples,
            "reason": decision.reason,
        }
        (rejected if decision.reason else kept)[decision.sample.request_id] = entry
    return kept, rejected


def test_majority_vote_picks_the_label_and_the_first_rationale_that_gave_it():
    task = get_task("arith")
    samples = [
        _sample("a", 0, "5"),
        _sample("a", 1, "7.0"),
        _sample("a", 2, "7"),
        _sample("a", 3, "", reason="no_answer_stated"),
    ]
    kept, rejected = select(samples, task, TeacherConfig(samples=4, temperature=0.7))
    assert rejected == {}
    ((request_id, row),) = kept.items()  # sample 1: the first that gave the majority label; its rationale is used
    assert (request_id, row["teacher_label"], row["vote_share"], row["samples"]) == ("a#1", "7.0", 0.6667, 4)
    assert row["teacher_correct"]


def test_ties_go_to_the_label_seen_first_and_unusable_rows_keep_their_reason():
    task = get_task("arith")
    samples = [
        _sample("b", 1, "3"),
        _sample("b", 0, "4"),
        _sample("c", 0, "", reason="empty_completion"),
        _sample("c", 1, "", reason="no_answer_stated"),
    ]
    kept, rejected = select(samples, task, TeacherConfig(samples=2, temperature=0.7))
    assert [(k, r["teacher_label"]) for k, r in kept.items()] == [("b#0", "4")]
    assert [(k, r["reason"]) for k, r in rejected.items()] == [("c#0", "empty_completion")]


def test_gold_filter_and_duplicate_inputs():
    task = get_task("arith")
    samples = [
        _sample("a", 0, "7", question="Same  question?"),
        _sample("b", 0, "7", question="same question?"),
        _sample("c", 0, "6"),
    ]
    kept, rejected = select(samples, task, TeacherConfig(require_gold_agreement=True))
    assert list(kept) == ["a#0"]
    assert [(k, r["reason"]) for k, r in rejected.items()] == [
        ("b#0", "duplicate_input"),
        ("c#0", "disagrees_with_gold"),
    ]
    kept, rejected = select(samples, task, TeacherConfig(deduplicate=False))
    assert list(kept) == ["a#0", "b#0", "c#0"] and rejected == {}


def test_input_keys_are_the_same_in_every_process():
    """Keys are written with the requests and compared by a later process (a rerun, the final selection):
    Python's per-process salted string hash would not match."""
    import subprocess
    import sys

    here = [question_key("How many  apples?"), question_key("how many apples?")]
    there = subprocess.run(
        [
            sys.executable,
            "-c",
            "from raydsbs.data.checks import question_key as k; print(k('How many  apples?'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert here[0] == here[1] == int(there)
