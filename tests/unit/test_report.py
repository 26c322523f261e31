"""The report on a run directory of real files: trainings over methods, fractions, λ, student sizes, seeds."""

from __future__ import annotations

import json

import pytest

from raydsbs.config import Config, to_yaml, with_overrides
from raydsbs.report import write_report
from raydsbs.rundir import RunDir

TEACHER = {"rows": 100, "kept": 90, "rejected": {"no_answer": 10}, "teacher_accuracy_train": 0.5,
           "generated_tokens": 12345, "seconds": 60.0}


def _accuracy(method: str, fraction: float, seed: int) -> float:
    slope, base = (0.3, 0.35) if method == "step_by_step" else (0.2, 0.2)
    return round(base + slope * fraction + 0.01 * seed, 4)


def _training(run: RunDir, overrides: dict, accuracy: float, parameters: int) -> None:
    config = with_overrides(Config(), overrides)
    folder = run.student / f"t{len(list(run.student.glob('t*')))}"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(to_yaml(config))
    (folder / "metrics.json").write_text(json.dumps({"val_accuracy": accuracy, "test_accuracy": accuracy,
                                                     "parameters": parameters}))
    (folder / "training.json").write_text(json.dumps({"seconds": 30.0}))


@pytest.fixture()
def run(tmp_path) -> RunDir:
    run = RunDir(tmp_path)
    run.update_summary("teacher", TEACHER)
    for method in ("step_by_step", "standard_finetune"):
        for fraction in (0.25, 0.5, 1.0):
            for seed in (0, 1):
                _training(run, {"train.method": method, "train.train_fraction": fraction, "train.seed": seed},
                          _accuracy(method, fraction, seed), parameters=1_000_000)
    for seed in (0, 1):
        _training(run, {"train.rationale_weight": 0.5, "train.seed": seed}, 0.6, parameters=1_000_000)
        _training(run, {"student.preset": "t5-mini", "train.seed": seed}, 0.7, parameters=8_000_000)
    return run


def test_rows_group_every_varying_key_and_average_over_seeds(run):
    report, table = write_report(Config(), run)
    lines = table.splitlines()
    assert lines[0] == "| method | λ | train fraction | student | seeds | val acc % | test acc % | train time s |"
    assert "| step_by_step | 1 | 0.25 | t5-tiny | 2 | 43.0 ± 0.7 | 43.0 ± 0.7 | 30 |" in lines
    assert "| standard_finetune | – | 1 | t5-tiny | 2 | 40.5 ± 0.7 | 40.5 ± 0.7 | 30 |" in lines
    assert "| step_by_step | 1 | 1 | t5-mini | 2 | 70.0 ± 0.0 | 70.0 ± 0.0 | 30 |" in lines
    assert len(lines) == 2 + 6 + 2  # header, rule, 3 fractions × 2 methods, λ=0.5, t5-mini


def test_the_teacher_is_the_baseline_and_its_smallest_beating_fraction_is_named(run):
    report, _ = write_report(Config(), run)
    text = report.read_text()
    assert "step by step (λ=1), student=t5-tiny: beats the teacher from 50 % of the train split" in text
    assert "standard finetune, student=t5-tiny: does not beat the teacher (best 40.5 % at 100 %)" in text
    assert "12345 generated tokens" in text and "16 trainings, 8.0 min of training" in text
    assert "few-shot accuracy on the train split" in text


def test_the_teacher_line_is_its_test_accuracy_when_its_test_outputs_exist(run):
    """Replaying the paper's files, the teacher's test-split accuracy is known: students are compared with it."""
    run.update_summary("teacher", {**TEACHER, "teacher_accuracy_test": 0.6})
    text = write_report(Config(), run)[0].read_text()
    assert "few-shot accuracy on the test split" in text and "released completions): 60.0 %" in text
    assert "step by step (λ=1), student=t5-tiny: beats the teacher from 100 % of the train split" in text


def test_plots_and_html_page(run):
    write_report(Config(), run)
    for name in ("accuracy_vs_fraction", "accuracy_vs_student_size", "accuracy_vs_rationale_weight"):
        image = run.plots / f"{name}.png"
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    page = (run.root / "report.html").read_text()
    assert page.count("<img ") == 3 and "<table>" in page and "beats the teacher from 50 %" in page


def test_a_report_without_students_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="raydsbs train"):
        write_report(Config(), RunDir(tmp_path))
