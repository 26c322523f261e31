"""The report on a run directory of real files: trainings over methods, fractions, λ, student sizes, seeds."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raydsbs import evaluate
from raydsbs.config import Config, to_yaml
from raydsbs.report import write_report
from raydsbs.resolve import with_overrides
from raydsbs.rundir import RunDir
from raydsbs.schemas import CORPUS, SEEN_IN_TRAIN

TEACHER = {
    "rows": 100,
    "kept": 90,
    "rejected": {"no_answer": 10},
    "teacher_accuracy_train": 0.45,
    "teacher_accuracy_test": 0.5,
    "teacher_rows_test": 40,
    "generated_tokens": 12345,
    "seconds": 60.0,
}
BASELINES = {
    "untrained_student": "t5-tiny",
    "untrained_student_test_accuracy": 0.05,
    "untrained_student_val_accuracy": 0.04,
    "floor_test_accuracy": 0.1,
    "floor": "always '7', the train split's most common label",
}


def _accuracy(method: str, fraction: float, seed: int) -> float:
    slope, base = (0.3, 0.35) if method == "step_by_step" else (0.2, 0.2)
    return round(base + slope * fraction + 0.01 * seed, 4)


def _training(run: RunDir, overrides: dict, accuracy: float, parameters: int) -> None:
    config = with_overrides(Config(), overrides)
    folder = run.student / f"t{len(list(run.student.glob('t*')))}"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(to_yaml(config))
    (folder / "metrics.json").write_text(
        json.dumps(
            {
                "val_accuracy": accuracy,
                "test_accuracy": accuracy,
                "parameters": parameters,
                "examples": 80,
                "test_tokens_per_answer": 3.0,
                "scoring": {"seconds": 10.0, "answers": 100, "cpus": 2, "gpus": 0},
            }
        )
    )
    (folder / "training.json").write_text(json.dumps({"seconds": 30.0}))


@pytest.fixture()
def run(tmp_path) -> RunDir:
    run = RunDir(tmp_path)
    run.update_summary("teacher", TEACHER)
    run.update_summary("baselines", BASELINES)
    for method in ("step_by_step", "standard_finetune"):
        for fraction in (0.25, 0.5, 1.0):
            for seed in (0, 1):
                _training(
                    run,
                    {"train.method": method, "train.train_fraction": fraction, "train.seed": seed},
                    _accuracy(method, fraction, seed),
                    parameters=1_000_000,
                )
    for seed in (0, 1):
        _training(run, {"train.rationale_weight": 0.5, "train.seed": seed}, 0.6, parameters=1_000_000)
        _training(run, {"student.preset": "t5-mini", "train.seed": seed}, 0.7, parameters=8_000_000)
    return run


def test_rows_group_every_varying_key_and_average_over_seeds(run):
    report, table = write_report(Config(), run)
    lines = table.splitlines()
    assert lines[0] == (
        "| method | λ | train fraction | student | seeds | examples | val acc % | test acc % | "
        "tokens/answer | train time s |"
    )
    assert "| step_by_step | 1 | 0.25 | t5-tiny | 2 | 80 | 43.0 ± 0.7 | 43.0 ± 0.7 | 3.0 | 30 |" in lines
    assert "| standard_finetune | – | 1 | t5-tiny | 2 | 80 | 40.5 ± 0.7 | 40.5 ± 0.7 | 3.0 | 30 |" in lines
    assert "| step_by_step | 1 | 1 | t5-mini | 2 | 80 | 70.0 ± 0.0 | 70.0 ± 0.0 | 3.0 | 30 |" in lines
    assert len(lines) == 2 + 6 + 2  # header, rule, 3 fractions × 2 methods, λ=0.5, t5-mini


def test_the_teacher_is_the_baseline_and_its_smallest_beating_fraction_is_named(run):
    report, _ = write_report(Config(), run)
    text = report.read_text()
    assert "step by step (λ=1), student=t5-tiny: beats the teacher from 50 % of the train split" in text
    assert "standard finetune, student=t5-tiny: does not beat the teacher (best 40.5 % at 100 %)" in text
    assert "teacher accuracy on the test split: 50.0 % of 40 rows" in text


def test_the_untrained_student_and_the_floor_are_stated_and_every_method_draws_the_same_rows(run):
    text = write_report(Config(), run)[0].read_text()
    assert "untrained student (t5-tiny, the same prompt and parser, no training): 5.0 % on the test split" in text
    assert "trivial floor (always '7', the train split's most common label): 10.0 %" in text
    assert "every method draws the same train rows" in text


def test_without_the_teacher_on_the_test_split_nothing_is_compared_with_it(run):
    """A teacher scored on the train split only is not the students' baseline: another split, other rows."""
    run.update_summary("teacher", {key: value for key, value in TEACHER.items() if "test" not in key})
    text = write_report(Config(), run)[0].read_text()
    assert "No teacher accuracy on the test split" in text and "beats the teacher from" not in text


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


def test_the_cost_section_prices_the_teacher_the_trainings_and_the_recommended_students_answers(run):
    """Resource-hours from the reservations and wall times (the teacher: 1 replica × 1 CPU for 60 s and 140 rows;
    16 trainings of 30 s on 2 workers × 0.9 CPU; scoring 0.2 CPU-s an answer), priced with cost.cpu_hour; the
    recommendation is the smallest student within cost.margin of the best validation accuracy."""
    priced = with_overrides(Config(), {"cost.cpu_hour": 0.05})
    text = write_report(priced, run)[0].read_text()
    cost = text.split("## Cost")[1]
    assert "- teacher (1 replica(s)): 60 s for 140 rows: 0.0167 CPU-h (0.0008333 at cost.*)" in cost
    assert "labelling 1M rows: 119 CPU-h (5.952 at cost.*)" in cost
    assert "- training: 16 training(s), 16 timed: 0.24 CPU-h (0.012 at cost.*) in all" in cost
    # only t5-mini is within 2 points of the best (70.0 %)
    assert "recommendation: step_by_step (λ=1) at a training fraction of 1 (8M parameters, validation 70.0 %" in cost
    assert "a million of its answers: 55.6 CPU-h (2.778 at cost.*)" in cost
    wide = write_report(with_overrides(Config(), {"cost.margin": 0.35}), run)[0].read_text()
    assert "recommendation: step_by_step (λ=1) at a training fraction of 0.25 (1M parameters" in wide
    assert "55.6 CPU-h" in wide and "at cost.*" not in wide.split("## Cost")[1]  # no prices: hours only


def test_an_api_teachers_prompt_and_generated_tokens_are_priced_apart():
    from raydsbs.cost import api_teacher_line

    teacher = {"rows": 1000, "prompt_tokens": 2_000_000, "generated_tokens": 100_000}
    both = with_overrides(Config(), {"cost.api_input_per_mtok": 0.5, "cost.api_output_per_mtok": 2.0}).cost
    line = api_teacher_line(both, teacher)
    assert line == "- teacher (an API): 2000000 prompt tokens and 100000 generated tokens: 1.2 (1200 per 1M rows)"
    output_only = with_overrides(Config(), {"cost.api_output_per_mtok": 2.0}).cost
    assert api_teacher_line(output_only, teacher).endswith(": 0.2 (200 per 1M rows); the prompt tokens unpriced")
    assert "(set cost.api_input_per_mtok and cost.api_output_per_mtok" in api_teacher_line(Config().cost, teacher)


def test_test_rows_that_repeat_a_train_input_are_left_out_of_a_held_out_accuracy(tmp_path, monkeypatch):
    """Two of five test rows repeat a train row's input (one of them but for case and spacing; the corpus stage's
    finding written here as it writes it, tests/unit/test_corpus.py finds it): the report
    names them and gives the teacher's, the baselines' and each student's accuracy on the three others, from
    their answers (the untrained student's scoring itself stood in for: its answers are written here)."""
    run = RunDir(tmp_path)
    run.corpus.mkdir()
    corpus = {
        "train": ["How many apples?", "What is 2 + 3?", "A new question"],
        "test": ["what is  2 + 3?", "How many apples?", "Unseen one", "Unseen two", "Unseen three"],
    }
    golds = {"train": ["1", "1", "2"], "test": ["1", "2", "1", "3", "1"]}  # the floor: always '1'
    for split, questions in corpus.items():
        rows = [{"id": f"{split}-{i}", "question": q, "gold": golds[split][i]} for i, q in enumerate(questions)]
        pq.write_table(pa.Table.from_pylist(rows, CORPUS), run.corpus_file(split).path)
    pq.write_table(
        pa.Table.from_pylist([{"id": "val-0", "question": "v", "gold": "1"}], CORPUS), run.corpus_file("val").path
    )
    run.update_summary(
        "corpus", {"train": 3, "val": 1, "test": 5, "rejected": {}, "inputs_seen_in_train": {"val": 0, "test": 2}}
    )
    seen = {"split": ["test", "test"], "id": ["test-0", "test-1"]}  # as the corpus stage finds them
    pq.write_table(pa.table(seen, SEEN_IN_TRAIN), run.seen_in_train_file.path)
    run.update_summary("teacher", TEACHER)
    teacher_right = [True, True, False, True, False]  # 1 of the 3 unseen rows
    run.teacher.mkdir()
    pq.write_table(
        pa.table({"id": [f"test-{i}" for i in range(5)], "split": ["test"] * 5, "teacher_correct": teacher_right}),
        run.heldout_file.path,
    )
    for seed, right in ((0, [True, True, True, True, False]), (1, [True, True, True, False, False])):
        _training(run, {"train.seed": seed}, 0.8, parameters=1_000_000)
        folder = sorted(run.student.glob("t*"), key=lambda f: f.name)[-1]
        predictions = {"split": ["val"] + ["test"] * 5, "id": ["val-0"] + [f"test-{i}" for i in range(5)]}
        pq.write_table(pa.table({**predictions, "correct": [True, *right]}), (folder / "predictions.parquet").path)
    untrained = {"student": "t5-tiny", "test_accuracy": 0.4, "val_accuracy": 0.0}
    monkeypatch.setattr(evaluate, "evaluate_untrained", lambda config, run: untrained)
    folder = evaluate._untrained(Config(), run)[1]
    folder.mkdir(parents=True)
    answers = {"split": ["test"] * 5, "id": [f"test-{i}" for i in range(5)], "correct": [1, 1, 0, 0, 0]}
    pq.write_table(pa.table(answers), RunDir.predictions_file(folder).path)
    baselines = evaluate.write_baselines(Config(), run)
    assert baselines["floor_test_accuracy"] == 0.6 and baselines["floor_unseen_test_accuracy"] == 0.6667
    assert baselines["untrained_student_unseen_test_accuracy"] == 0.0
    text = write_report(Config(), run)[0].read_text()
    assert "Beware: 2 of the 5 test rows repeat a train row's input" in text
    section = text.split("## Test rows that no train row repeats\n")[1].split("\n\n")[0].splitlines()
    assert section == [
        "3 of the 5 test rows have an input no train row has; on them alone:",
        "- the teacher: 33.3 %",
        "- the untrained student: 0.0 %",
        "- the trivial floor (always '1', the train split's most common label): 66.7 %",
        "- step by step (λ=1), train fraction 1: 50.0 ± 23.6 %",  # 2 of 3 and 1 of 3
    ]
