"""How a teacher's completion states its answer: where this answer ends, and where the answer is said.

A few-shot completion often runs on into the next example; :meth:`CompletionReader.cut` drops it,
whether that example opens with our prompts' ``Q:`` or with the task's own input template
(``Premise: ...`` in the released e-SNLI completions). :meth:`CompletionReader.statement` then finds
the answer statement in whichever of the forms teachers write::

    So the answer is (c) wooded area.     the task's answer_marker
    The answer is 42. / The final answer is 42. / Therefore, the correct answer is 42.
    Answer: neutral / **Final answer:** (b)
    #### 42                               (GSM8K)
    \\boxed{42}                            (LaTeX; also unwrapped inside the forms above)
    {"rationale": "...", "answer": "42"}  (JSON, bare or in a ``` fence)

and a task's own patterns first (``answer_patterns`` in its YAML: regular expressions with a group
named ``answer``). When several statements are present the last one counts (a teacher that corrects
itself means its last answer); the rationale is the text before it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ParsedCompletion:
    """A teacher completion split into rationale and label.

    ``reason`` is None when the row is kept; otherwise it names why the row
    is rejected. ``label`` may be set on a rejected row (an empty rationale
    with a stated answer still counts towards the teacher's accuracy).
    """

    rationale: str
    label: str | None
    reason: str | None = None


# Phrases that introduce the answer; the text after them up to the end of its line is the answer.
_ANSWER_PHRASES = (
    r"\b(?:so|thus|therefore|hence)?,?\s*the\s+(?:final\s+|correct\s+|right\s+|best\s+)?answer\s+(?:is|would\s+be|will\s+be)\s*:?",
    r"(?:\*\*)?\b(?:final\s+)?answer(?:\*\*)?\s*:\s*(?:\*\*)?",
    r"(?:^|\n)\s*####\s*",
)
_BOXED = re.compile(r"\\boxed\s*\{")
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL | re.IGNORECASE)
_JSON_ANSWER_KEYS = ("answer", "label", "final_answer")
_JSON_RATIONALE_KEYS = ("rationale", "reasoning", "explanation", "thought", "thoughts")


@dataclass(frozen=True)
class Statement:
    """A completion split at its answer statement: the rationale before it, the answer's own text."""

    rationale: str
    answer: str


def last_boxed(text: str) -> tuple[int, str] | None:
    """Where the last ``\\boxed{...}`` in ``text`` starts, and its content (nested braces kept); None if none."""
    starts = list(_BOXED.finditer(text))
    if not starts:
        return None
    depth, begin = 1, starts[-1].end()
    for position in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[position], 0)
        if depth == 0:
            return starts[-1].start(), text[begin:position].strip()
    return None


def _strip_wrappers(answer: str) -> str:
    """``$\\boxed{42}$``, ``**42**`` or ``"42"`` -> ``42``."""
    boxed = last_boxed(answer)
    if boxed is not None:
        return boxed[1]
    return answer.strip().strip("*").strip().strip('"').strip()


class CompletionReader:
    """Cuts a completion at the next few-shot example and finds its answer statement.

    ``answer_marker``: how the task's exemplars state the answer ("So the answer is").
    ``example_openings``: how a next example can start ("Q:", the input template's opening words).
    ``patterns``: a task's own regular expressions, each with a group named ``answer``, tried first.
    """

    def __init__(self, answer_marker: str, example_openings: Sequence[str] = ("Q:",), patterns: Sequence[str] = ()):
        openings = [opening.strip() for opening in example_openings if opening.strip()]
        self.next_example = (
            re.compile("|".join(rf"\n\s*{re.escape(opening)}" for opening in openings)) if openings else None
        )
        self.own_patterns = [re.compile(pattern, re.IGNORECASE | re.MULTILINE) for pattern in patterns]
        phrases = [re.escape(answer_marker)] if answer_marker.strip() else []
        self.phrases = re.compile("|".join([*phrases, *_ANSWER_PHRASES]), re.IGNORECASE)

    def cut(self, completion: str) -> str:
        """The completion up to the model's next few-shot example, stripped."""
        if self.next_example is None:
            return completion.strip()
        return self.next_example.split(completion, maxsplit=1)[0].strip()

    def statement(self, text: str) -> Statement | None:
        """Where ``text`` (already cut) states its answer, or None when it states none."""
        for pattern in self.own_patterns:
            matches = list(pattern.finditer(text))
            if matches:
                last = matches[-1]
                return Statement(text[: last.start()].strip(), _strip_wrappers(last.group("answer")))
        found = _json_statement(text)
        if found is not None:
            return found
        matches = list(self.phrases.finditer(text))
        if matches:
            last = matches[-1]
            line = text[last.end() :].strip().split("\n")[0]
            return Statement(text[: last.start()].strip(), _strip_wrappers(line))
        boxed = last_boxed(text)
        if boxed is not None:
            start, content = boxed
            return Statement(text[:start].rstrip().rstrip("$").rstrip(), content)
        return None


def _json_statement(text: str) -> Statement | None:
    """``{"rationale": ..., "answer": ...}``, bare or fenced; None when ``text`` is not such an object."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    if not body.startswith("{"):
        return None
    try:
        value = json.loads(body)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    answer = next((value[key] for key in _JSON_ANSWER_KEYS if key in value), None)
    if answer is None or isinstance(answer, (dict, list)):
        return None
    rationale = next((value[key] for key in _JSON_RATIONALE_KEYS if isinstance(value.get(key), str)), "")
    return Statement(rationale.strip(), str(answer).strip())
