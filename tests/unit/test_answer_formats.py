"""The answer statements the default parser reads: a raw completion of each form, and what it becomes."""

import pytest

from raydsbs.tasks import TaskSpecError, get_task
from raydsbs.tasks.spec import load_spec

CQA_QUESTION = (
    "Where would you find a fox?\nAnswer Choices:\n(a) zoo\n(b) wooded area\n(c) skyscaper\n(d) water cooler\n(e) pond"
)
ESNLI_QUESTION = "Premise: A man sleeps.\nHypothesis: A person rests.\nDoes the premise entail the hypothesis?"


@pytest.mark.parametrize(
    "task_name, completion, rationale, label",
    [
        # the task's own answer marker, and the next few-shot example cut off
        ("arith", " 3 + 4 = 7. So the answer is 7.\n\nQ: Tom has 2 apples.", "3 + 4 = 7.", "7"),
        ("arith", " 3 + 4 = 7. The final answer is 7.", "3 + 4 = 7.", "7"),
        ("arith", " 3 + 4 = 7. Therefore, the correct answer is: 7", "3 + 4 = 7.", "7"),
        ("arith", " 3 + 4 = 7.\nAnswer: 7", "3 + 4 = 7.", "7"),
        ("arith", " 3 + 4 = 7.\n**Final answer:** 7", "3 + 4 = 7.", "7"),
        ("arith", " Natalia sold 3 + 4 = 7 clips.\n#### 7", "Natalia sold 3 + 4 = 7 clips.", "7"),
        ("arith", " 3 + 4 = 7, so she has $\\boxed{7}$.", "3 + 4 = 7, so she has", "7"),
        ("arith", " 3 + 4 = 7. The answer is $\\boxed{7}$.", "3 + 4 = 7.", "7"),
        ("arith", ' {"rationale": "3 + 4 = 7.", "answer": 7}', "3 + 4 = 7.", "7"),
        ("arith", ' ```json\n{"reasoning": "3 + 4 = 7.", "answer": "7"}\n```', "3 + 4 = 7.", "7"),
        # a teacher that corrects itself: its last statement counts
        (
            "arith",
            " 3 + 5 = 8, so the answer is 8. Wait: 3 + 4 = 7. So the answer is 7.",
            "3 + 5 = 8, so the answer is 8. Wait: 3 + 4 = 7.",
            "7",
        ),
        # the e-SNLI completions the authors released: "Answer:", then the next example in the task's own layout
        (
            "esnli",
            " A man sleeping is a person resting. Answer: entailment\n\nPremise: Two dogs run.\nHypothesis: ...",
            "A man sleeping is a person resting.",
            "entailment",
        ),
        ("esnli", " Sleeping is resting. So the answer is (a) entailment.", "Sleeping is resting.", "entailment"),
        ("esnli", " Sleeping is resting.\nAnswer: Entailment.", "Sleeping is resting.", "entailment"),
        # lettered choices: the letter alone names the row's choice
        ("cqa", " Foxes live in woods. So the answer is (b) wooded area.", "Foxes live in woods.", "wooded area"),
        ("cqa", " Foxes live in woods. Answer: (b)", "Foxes live in woods.", "wooded area"),
        ("cqa", " Foxes live in woods. The answer is B.", "Foxes live in woods.", "wooded area"),
        ("cqa", " Skyscrapers are tall. So the answer is (c) skyscraper.", "Skyscrapers are tall.", "skyscaper"),
        ("svamp", " 84 / 2 = 42. The answer is (84 / 2).\n\nQ: There are 120 ...", "84 / 2 = 42.", "(84 / 2)"),
        (
            "svamp",
            " 16 * 17 = 272, 272 * 4 = 1088. The answer is (16 * 17) * 4.",
            "16 * 17 = 272, 272 * 4 = 1088.",
            "(16 * 17) * 4",
        ),
    ],
)
def test_every_common_answer_form_is_read(task_name, completion, rationale, label):
    question = {"cqa": CQA_QUESTION, "esnli": ESNLI_QUESTION}.get(task_name, "")
    parsed = get_task(task_name).parse_completion(completion, question)
    assert (parsed.rationale, parsed.label, parsed.reason) == (rationale, label, None)


@pytest.mark.parametrize(
    "completion, reason",
    [
        (" Foxes and fish differ. So the answer is either (b) wooded area or (e) pond.", "unparsable_answer"),
        (" Many hold shirts. So the answer is one of these four.", "unparsable_answer"),
        (" Ice goes in drinks. So the answer is (d) ice.", "unparsable_answer"),  # (d) is "water cooler"
        (" Foxes live in woods. So the answer is (g).", "unparsable_answer"),  # no choice (g)
        (" Foxes live in woods.", "no_answer_stated"),
    ],
)
def test_an_answer_that_names_no_single_choice_is_rejected(completion, reason):
    parsed = get_task("cqa").parse_completion(completion, CQA_QUESTION)
    assert (parsed.label, parsed.reason) == (None, reason)


def test_a_task_file_adds_its_own_answer_patterns(tmp_path):
    spec = tmp_path / "verdict.yaml"
    spec.write_text(
        "name: verdict\ninput_template: 'Claim: {claim}'\nanswer: {kind: choice, choices: [supported, refuted]}\n"
        "answer_patterns: ['Verdict: (?P<answer>\\w+)']\n"
        "exemplars: [{question: 'Claim: sky is blue', rationale: 'It is.', answer: supported}]\n"
    )
    task = get_task(str(spec))
    parsed = task.parse_completion(" The sky looks blue. Verdict: supported (high confidence)\n\nClaim: grass is red")
    assert (parsed.rationale, parsed.label, parsed.reason) == ("The sky looks blue.", "supported", None)
    # the template's opening ("Claim:") ends the completion as Q: does
    assert (
        task.parse_completion(" Blue. So the answer is refuted.\nClaim: x. So the answer is supported.").label
        == "refuted"
    )


@pytest.mark.parametrize(
    "pattern, problem",
    [("Verdict: (\\w+)", "needs a group named 'answer'"), ("Verdict: (?P<answer>", "not a regular expression")],
)
def test_a_bad_answer_pattern_is_refused_when_the_task_loads(tmp_path, pattern, problem):
    spec = tmp_path / "verdict.yaml"
    spec.write_text(
        "name: verdict\ninput_template: '{claim}'\nanswer: {kind: free}\n"
        f"answer_patterns: ['{pattern}']\nexemplars: [{{question: q, rationale: r, answer: a}}]\n"
    )
    with pytest.raises(TaskSpecError, match=problem):
        load_spec(spec)


def test_a_students_cot_output_is_read_like_a_teachers():
    task = get_task("cqa")
    assert (
        task.parse_prediction("Foxes live in woods. So the answer is (b) wooded area.", CQA_QUESTION) == "wooded area"
    )
    assert task.parse_prediction("(b)", CQA_QUESTION) == "wooded area"
    assert get_task("arith").parse_prediction("7") == "7"
