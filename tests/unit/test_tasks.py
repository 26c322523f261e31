from collections import Counter
from difflib import SequenceMatcher

import pytest

from raydsbs.config import TaskConfig
from raydsbs.data.released import ReleasedDataError, completions_by_id, read_completions, read_ground_truth
from raydsbs.tasks import get_task
from raydsbs.tasks.arith import TWO_STEPS, generate_problems
from raydsbs.teacher.prompts import build_prompt


def test_unknown_task_lists_known_ones():
    with pytest.raises(KeyError, match="known tasks: anli, arith, arith2, cqa, esnli, svamp, or a path"):
        get_task("gsm8k")


def test_arith_generator_is_seeded_and_answers_are_right():
    first, again = generate_problems(200, seed=3), generate_problems(200, seed=3)
    assert first == again and len({q for q, _ in first}) == 200
    assert generate_problems(200, seed=4) != first
    question, answer = next((q, a) for q, a in first if "gives away" in q)
    numbers = [int(n) for n in __import__("re").findall(r"\d+", question)]
    assert answer == numbers[0] - numbers[1]
    two_steps = generate_problems(200, seed=3, templates=TWO_STEPS)
    question, answer = next((q, a) for q, a in two_steps if "buys" in q and "gives" in q)
    numbers = [int(n) for n in __import__("re").findall(r"\d+", question)]
    assert answer == numbers[0] + numbers[1] - numbers[2]


def test_arith_splits_do_not_overlap():
    splits = get_task("arith").load_splits(TaskConfig(num_train=50, num_val=10, num_test=20))
    questions = [{e.question for e in splits[s]} for s in ("train", "val", "test")]
    assert [len(q) for q in questions] == [50, 10, 20]
    assert not (questions[0] & questions[1]) and not (questions[0] & questions[2]) and not (questions[1] & questions[2])


@pytest.mark.parametrize(
    "completion, rationale, label, reason",
    [
        (" Ann has 3 + 4 = 7. So the answer is 7.\n\nQ: Next question", "Ann has 3 + 4 = 7.", "7", None),
        (" 2 * 6 = 12, 12 - 5 = 7. The answer is 7 apples.", "2 * 6 = 12, 12 - 5 = 7.", "7", None),
        (" The answer is 10 + 10 + 1 = 21.", "", "21", "empty_rationale"),
        (" She has 3 + 1 = 4 apples. She has", "She has 3 + 1 = 4 apples. She has", None, "no_answer_stated"),
        (" It is hard. So the answer is unknown.", "It is hard.", None, "unparsable_answer"),
        ("", "", None, "empty_completion"),
    ],
)
def test_arith_completion_parsing(completion, rationale, label, reason):
    parsed = get_task("arith").parse_completion(completion)
    assert (parsed.rationale, parsed.label, parsed.reason) == (rationale, label, reason)


def test_prompt_holds_exemplars_then_the_question():
    task = get_task("arith")
    prompt = build_prompt(task, "Zoe has 2 apples. How many?", num_shots=2)
    assert prompt.count("Q: ") == 3 and prompt.endswith("Q: Zoe has 2 apples. How many?\nA:")
    assert "So the answer is 5." in prompt


def _teacher_accuracy(task_name: str, data_dir, split: str, parser: str = "raydsbs") -> tuple[float, Counter]:
    task = get_task(task_name)
    truth = read_ground_truth(data_dir, task_name, split)
    completions = read_completions(data_dir, task_name, split)
    examples = [task.to_example(row, str(i)) for i, row in enumerate(truth)]
    rules = task.completion_rules(parser)
    parsed = [rules.parse_completion(text, e.question) for text, e in zip(completions, examples, strict=True)]
    correct = sum(rules.answers_match(p.label, e.gold) for p, e in zip(parsed, examples, strict=True))
    return correct / len(examples), Counter(p.reason for p in parsed)


def test_svamp_palm_completions(dss_data):
    """The paper's PaLM outputs: 11 train completions never state an answer (the authors' loader
    turns them into empty rationales); some state an unknown instead of numbers ("(some - 8)")."""
    accuracy, reasons = _teacher_accuracy("svamp", dss_data / "svamp", "test")
    assert accuracy == pytest.approx(0.775, abs=0.001)  # the authors' first-parenthesis parser: 0.740
    _, train_reasons = _teacher_accuracy("svamp", dss_data / "svamp", "train")
    assert train_reasons["no_answer_stated"] == 11
    assert train_reasons["unparsable_answer"] == 22
    assert train_reasons[None] == 767


def test_cqa_palm_completions(dss_data):
    """28 test completions name two choices, none, or a letter and another choice's text: no answer."""
    accuracy, reasons = _teacher_accuracy("cqa", dss_data / "cqa", "test")
    assert accuracy == pytest.approx(0.785, abs=0.001)  # the authors' parser: 0.772
    assert reasons == Counter({None: 1193, "unparsable_answer": 28})
    parsed = get_task("cqa").parse_completion(read_completions(dss_data / "cqa", "cqa", "test")[0])
    assert parsed.label == "wooded area" and "\nQ:" not in parsed.rationale


@pytest.mark.parametrize("task_name", ["svamp", "cqa"])
def test_the_default_parser_agrees_with_the_authors_on_the_released_rows(dss_data, task_name):
    """Where both read a label they agree, but for two known cases: SVAMP answers like "(16 * 17) * 4", which
    the authors' rule cuts at the last parenthesis ("(16 * 17)"); and a CQA letter whose text differs by a
    typo from the row's listed choice ("(c) skyscraper" for "skyscaper"), read here as the listed choice."""
    task, paper = get_task(task_name), get_task(task_name).completion_rules("paper")
    same = read = truncated = typo = 0
    for split in ("train", "test"):
        truth = read_ground_truth(dss_data / task_name, task_name, split)
        for i, (row, text) in enumerate(
            zip(truth, read_completions(dss_data / task_name, task_name, split), strict=True)
        ):
            example = task.to_example(row, str(i))
            ours, theirs = task.parse_completion(text, example.question), paper.parse_completion(text)
            if ours.label is None:
                continue
            read += 1
            if theirs.label is not None and task.normalize(ours.label) == task.normalize(theirs.label):
                same += 1
            elif task_name == "svamp" and theirs.label and ours.label.startswith(theirs.label):
                truncated += 1
            elif task_name == "cqa" and theirs.label and ours.label != theirs.label:
                typo += int(SequenceMatcher(None, ours.label.lower(), theirs.label.lower()).ratio() >= 0.8)
    assert same + truncated + typo == read  # every disagreement is one of the two cases
    assert same / read >= {"svamp": 0.97, "cqa": 0.995}[task_name]


def test_svamp_labels_compare_by_value():
    task = get_task("svamp")
    assert task.answers_match("(84 / 2)", "( 84.0 / 2.0 )")
    assert task.answers_match("(16 * 17) * 4", "( 16.0 * ( 17.0 * 4.0 ) )")
    assert not task.answers_match("(84 - 2)", "( 84.0 / 2.0 )")
    assert not task.answers_match("__import__('os')", "( 1.0 )")


def test_released_completions_line_up_with_ground_truth(dss_data):
    by_id = completions_by_id(dss_data / "svamp", "svamp")
    assert len(by_id) == 1000 and by_id["svamp-test-000000"].startswith("They put 10 seeds")


def test_released_reader_names_the_bad_line(tmp_path):
    (tmp_path / "svamp_train.json").write_text('{"input": "a", "label": "1"}\nnot json\n')
    rows = read_ground_truth(tmp_path, "svamp", "train")  # streamed: the bad line is named when it is read
    assert next(rows) == {"input": "a", "label": "1"}
    with pytest.raises(ReleasedDataError, match=r"svamp_train.json:2: not JSON"):
        next(rows)
    with pytest.raises(ReleasedDataError, match="needs task.data_dir"):
        read_ground_truth(None, "svamp", "train")


@pytest.mark.parametrize("task_name, paper_accuracy", [("svamp", 0.740), ("cqa", 0.772)])
def test_paper_parsers_reproduce_the_papers_teacher_accuracy(dss_data, task_name, paper_accuracy):
    """task.parser=paper reads the released PaLM outputs as the authors' code does: the paper's own figures."""
    accuracy, _ = _teacher_accuracy(task_name, dss_data / task_name, "test", parser="paper")
    assert accuracy == pytest.approx(paper_accuracy, abs=0.0005)


def test_asking_the_embedded_task_for_more_problems_than_its_templates_make_is_an_error(monkeypatch):
    import raydsbs.tasks.arith as arith

    monkeypatch.setattr(arith, "STALE_DRAWS", 2_000)  # the same rule, reached sooner
    one_template = (arith.ONE_STEP[0],)
    with pytest.raises(ValueError, match="distinct problems and no new one"):
        generate_problems(10**7, seed=0, templates=one_template)
