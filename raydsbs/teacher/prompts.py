"""Few-shot chain-of-thought prompts, in the style of the paper::

    Q: Tom has 4 apples. He buys 6 more. ... How many apples does Tom have now?
    A: Tom starts with 4 apples. ... So the answer is 7.

    Q: <the row's question>
    A:

The model continues after ``A:`` with a rationale and the answer sentence.
"""

from __future__ import annotations

from raydsbs.tasks import Task


def build_prompt(task: Task, question: str, num_shots: int) -> str:
    """The few-shot prompt for one question, with the task's first ``num_shots`` exemplars."""
    shots = task.exemplars()[:num_shots]
    blocks = [f"Q: {shot.question}\nA: {task.format_answer(shot)}" for shot in shots]
    blocks.append(f"Q: {question}\nA:")
    return "\n\n".join(blocks)
