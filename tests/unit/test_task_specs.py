"""Tasks from YAML: the paper's NLI benchmarks, a user's own task, and bad rows in local files."""

from __future__ import annotations

import json

import pytest

from raydsbs.config import ConfigError, TaskConfig
from raydsbs.resolve import load_config
from raydsbs.tasks import Example, RejectedRow, get_task
from raydsbs.teacher.prompts import build_prompt

SENTIMENT = """
name: sentiment
input_template: "Review: {text}"
label_column: stars
label_names: [negative, positive]
answer: {kind: choice, choices: [negative, positive]}
exemplars:
  - {row: {text: "Great phone, works well."}, rationale: "The reviewer praises the phone.", answer: positive}
"""


@pytest.fixture
def sentiment(tmp_path):
    spec = tmp_path / "sentiment.yaml"
    spec.write_text(SENTIMENT)
    rows = [
        {"text": "Loved it.", "stars": 1},
        {"text": "Broke in a day.", "stars": 0},
        {"text": "Fine.", "stars": 1},
        {"text": "Meh.", "stars": 0},
        {"text": "Awful.", "stars": 0},
    ]
    train = tmp_path / "train.jsonl"
    lines = [json.dumps(r).encode() for r in rows]
    lines.insert(2, b'{"text": "caf\xe9 \xff", "stars": 1}')  # not UTF-8
    lines.insert(3, b'{"stars": 1}')  # no text column
    lines.insert(4, b'{"text": ["a", "list"], "stars": 0}')  # mistyped
    lines.insert(5, b'{"text": "fine", "stars": 7}')  # not a label index
    lines.insert(6, b"{broken json")
    train.write_bytes(b"\n".join(lines) + b"\n")
    test = tmp_path / "test.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows[:2]), test)
    return spec, train, test


def test_a_yaml_task_reads_local_files_and_rejects_bad_rows_by_name(sentiment):
    spec, train, test = sentiment
    task = get_task(str(spec))
    config = TaskConfig(name=str(spec), train_file=str(train), test_file=str(test), num_val=1)
    splits = task.load_splits(config)
    assert sorted(splits) == ["test", "train"]  # no validation source: the corpus stage carves it from train
    train = list(splits["train"])  # every row in file order, the rejected ones among them
    rejected = {row.reason: row.detail for row in train if isinstance(row, RejectedRow)}
    assert set(rejected) == {"undecodable_bytes", "missing_column", "mistyped_field", "unknown_label", "not_json"}
    assert rejected["undecodable_bytes"].startswith("train.jsonl line 3:")
    assert "no column 'text'" in rejected["missing_column"]
    examples = [row for row in train if isinstance(row, Example)]
    assert [e.question for e in examples] == [
        f"Review: {t}" for t in ["Loved it.", "Broke in a day.", "Fine.", "Meh.", "Awful."]
    ]
    assert {e.gold for e in examples} == {"positive", "negative"}
    assert [e.question for e in splits["test"]] == ["Review: Loved it.", "Review: Broke in a day."]
    prompt = build_prompt(task, "Review: Meh.", num_shots=1)
    assert prompt == (
        "Q: Review: Great phone, works well.\nA: The reviewer praises the phone. So the answer is positive.\n\n"
        "Q: Review: Meh.\nA:"
    )


def test_a_broken_task_file_is_a_config_error(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: bad\ninput_template: '{x}'\nanswer: {kind: vibes}\nexemplars: []\n")
    with pytest.raises(ConfigError, match="bad.yaml: answer.kind"):
        load_config(None, [f"task.name={spec}"])


@pytest.mark.parametrize("name", ["esnli", "anli"])
def test_nli_tasks_format_pairs_and_parse_choices(name):
    task = get_task(name)
    row = {"premise": "A dog runs.", "hypothesis": "An animal moves.", "label": 0}
    example = task.to_example(row, "r1")
    assert example == Example(
        "r1",
        "Premise: A dog runs.\nHypothesis: An animal moves.\nDoes the premise entail the hypothesis?",
        "entailment",
    )
    parsed = task.parse_completion(" A dog is an animal and running is moving. So the answer is entailment.\n\nQ: next")
    assert (parsed.label, parsed.reason) == ("entailment", None)
    assert task.parse_completion(" Hmm. So the answer is (b) neutral.").label == "neutral"
    assert task.parse_completion(" Hmm. So the answer is maybe.").reason == "unparsable_answer"
    assert task.answers_match("Entailment", "entailment") and not task.answers_match("neutral", "entailment")
    assert len(task.exemplars()) == 6 and {e.answer for e in task.exemplars()} == {
        "entailment",
        "neutral",
        "contradiction",
    }


def test_offline_hub_task_says_how_to_use_local_files():
    with pytest.raises(Exception, match="task.train_file"):
        get_task("esnli").load_splits(TaskConfig(name="esnli"))


# Rows shaped as the four hub datasets serve them (their dataset cards' columns; a few fields each).
HUB_ROWS = {
    ("esnli/esnli", None): [
        {
            "premise": "A dog runs.",
            "hypothesis": "An animal moves.",
            "label": 0,
            "explanation_1": "A dog is an animal.",
            "explanation_2": "",
            "explanation_3": "",
        },
        {
            "premise": "A cat sleeps.",
            "hypothesis": "A cat naps.",
            "label": -1,  # SNLI: no gold
            "explanation_1": "",
            "explanation_2": "",
            "explanation_3": "",
        },
    ],
    ("facebook/anli", None): [
        {"uid": "a1", "premise": "Paris is in France.", "hypothesis": "Paris is in Spain.", "label": 2, "reason": ""}
    ],
    ("cos_e", "v1.11"): [
        {
            "id": "q1",
            "question": "Where do you keep milk?",
            "choices": ["fridge", "oven", "shelf", "car", "bed"],
            "answer": "fridge",
            "abstractive_explanation": "",
            "extractive_explanation": "",
        }
    ],
    ("ChilleD/SVAMP", None): [
        {
            "ID": "chal-1",
            "Body": "Tom has 8 apples and eats 5.",
            "Question": "How many are left?",
            "Equation": "( 8.0 - 5.0 )",
            "Answer": 3.0,
            "Type": "Subtraction",
            "question_concat": "Tom has 8 apples and eats 5. How many are left?",
        }
    ],
}


@pytest.fixture
def hub_stand_in(monkeypatch):
    """A stand-in for the ``datasets`` package (the hub cannot be reached from here): it records what
    it was asked for and serves HUB_ROWS for every split."""
    import sys
    import types

    asked = []

    def load_dataset(name, config=None, split=None):
        asked.append((name, config, split))
        return list(HUB_ROWS[(name, config)])

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    return asked


@pytest.mark.parametrize(
    "task, calls, question, gold",
    [
        (
            "esnli",
            [("esnli/esnli", None, "train"), ("esnli/esnli", None, "validation"), ("esnli/esnli", None, "test")],
            "Premise: A dog runs.\nHypothesis: An animal moves.\nDoes the premise entail the hypothesis?",
            "entailment",
        ),
        (
            "anli",
            [
                ("facebook/anli", None, "train_r1"),
                ("facebook/anli", None, "dev_r1"),
                ("facebook/anli", None, "test_r1"),
            ],
            "Premise: Paris is in France.\nHypothesis: Paris is in Spain.\nDoes the premise entail the hypothesis?",
            "contradiction",
        ),
        ("cqa", [("cos_e", "v1.11", "train"), ("cos_e", "v1.11", "validation")], None, "fridge"),
        (
            "svamp",
            [("ChilleD/SVAMP", None, "train"), ("ChilleD/SVAMP", None, "test")],
            "Tom has 8 apples and eats 5. How many are left?",
            "( 8.0 - 5.0 )",
        ),
    ],
)
def test_the_papers_tasks_read_the_hub_datasets_columns(hub_stand_in, task, calls, question, gold):
    splits = {split: list(rows) for split, rows in get_task(task).load_splits(TaskConfig(name=task)).items()}
    assert sorted(hub_stand_in) == sorted(calls)
    example = splits["test"][0]
    assert isinstance(example, Example) and example.gold == gold
    if question:
        assert example.question == question
    else:  # CQA: the question and its five choices, lettered
        assert example.question.startswith("Where do you keep milk?") and "(a) fridge" in example.question
    assert get_task(task).answers_match(gold, example.gold)
    if task == "esnli":  # SNLI's pairs without a gold label (-1) are rejected rows with a reason, not a crash
        rejected = [row for row in splits["test"] if isinstance(row, RejectedRow)]
        assert [row.reason for row in rejected] == ["unknown_label"]
