"""The paper authors' own rules for reading and scoring their teacher's completions (``task.parser=paper``).

They are looser than raydsbs's parsers in some places and stricter in
others, and they are what the paper's teacher accuracies were computed with
(SVAMP test 74.0 %, CQA test 77.2 %). Use them to reproduce the paper's
figures; raydsbs's own parsers (the default) read more answers correctly
(SVAMP 77.5 %, CQA 78.2 % on the same files). Rules, per task:

- svamp: cut at the first ``Q:``; the text must contain ``The answer is``
  exactly once; the label runs from the first ``(`` to the last ``)`` after it.
- cqa: cut at the first ``Q:``; split on ``So the answer is`` (exactly once);
  the label is the text after the first ``(x)`` marker, one final ``.`` dropped.
- esnli: the rationale is the text before ``Answer:``; the label the text after
  ``Answer: `` up to ``Premise``.
- anli: cut at the first ``Premise:``; split on ``So the answer is`` (exactly
  once); the label is what follows, its last character dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from raydsbs.tasks.completions import ParsedCompletion
from raydsbs.tasks.safe_eval import try_evaluate


def _result(rationale: str, label: str | None) -> ParsedCompletion:
    rationale = rationale.strip()
    if label is None or not label.strip():
        return ParsedCompletion(rationale, None, "unparsable_answer")
    if not rationale:
        return ParsedCompletion("", label.strip(), "empty_rationale")
    return ParsedCompletion(rationale, label.strip())


def _split_once(text: str, marker: str) -> tuple[str, str] | None:
    parts = text.split(marker)
    return (parts[0], parts[1]) if len(parts) == 2 else None


def parse_svamp(completion: str) -> ParsedCompletion:
    parts = _split_once(completion.split("Q:")[0].rstrip(), "The answer is")
    if parts is None:
        return ParsedCompletion("", None, "no_answer_stated")
    rationale, answer = parts
    expression = re.search(r"\(.*\)", answer)
    return _result(rationale, expression.group(0) if expression else None)


def parse_cqa(completion: str) -> ParsedCompletion:
    parts = _split_once(completion.split("Q:")[0].rstrip(), "So the answer is")
    if parts is None:
        return ParsedCompletion("", None, "no_answer_stated")
    rationale, answer = parts
    after_letter = re.split(r"\(.\)", answer)
    if len(after_letter) < 2 or not after_letter[1].strip():
        return _result(rationale, None)
    label = after_letter[1].strip()
    return _result(rationale, label[:-1] if label.endswith(".") else label)


def parse_esnli(completion: str) -> ParsedCompletion:
    rationale = completion.split("Answer:")[0]
    if "Answer: " not in completion:
        return ParsedCompletion(rationale.strip(), None, "no_answer_stated")
    return _result(rationale, completion.split("Answer: ")[1].split("Premise")[0])


def parse_anli(completion: str) -> ParsedCompletion:
    parts = _split_once(completion.split("Premise:")[0].rstrip(), "So the answer is")
    if parts is None:
        return ParsedCompletion("", None, "no_answer_stated")
    rationale, answer = parts
    return _result(rationale, answer.lstrip()[:-1])


def same_string(predicted: str | None, gold: str) -> bool:
    return predicted is not None and predicted == gold


def same_value(predicted: str | None, gold: str) -> bool:
    value = try_evaluate(predicted) if predicted is not None else None
    return value is not None and value == try_evaluate(gold)


@dataclass(frozen=True)
class PaperRules:
    """Reads and scores completions like a :class:`~raydsbs.tasks.base.Task` does."""

    parse: Callable[[str], ParsedCompletion]
    answers_match: Callable[[str | None, str], bool]

    def parse_completion(self, completion: str, question: str = "") -> ParsedCompletion:
        """The authors' rules read the completion alone."""
        return self.parse(completion)


PAPER_RULES: dict[str, PaperRules] = {
    "svamp": PaperRules(parse_svamp, same_value),
    "cqa": PaperRules(parse_cqa, same_string),
    "esnli": PaperRules(parse_esnli, same_string),
    "anli": PaperRules(parse_anli, same_string),
}
