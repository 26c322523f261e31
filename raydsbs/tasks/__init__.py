"""The task registry: each task formats inputs, holds exemplars, parses answers and scores them."""

from __future__ import annotations

from raydsbs.tasks.arith import ArithTask
from raydsbs.tasks.base import SPLITS, Example, Exemplar, ParsedCompletion, Task
from raydsbs.tasks.cqa import CqaTask
from raydsbs.tasks.svamp import SvampTask

TASKS: dict[str, type[Task]] = {task.name: task for task in (ArithTask, SvampTask, CqaTask)}


class UnknownTaskError(KeyError):
    def __str__(self) -> str:
        return self.args[0]


def get_task(name: str) -> Task:
    """The task called ``name``; an unknown name fails with the list of known ones."""
    if name not in TASKS:
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]()


__all__ = ["SPLITS", "TASKS", "Example", "Exemplar", "ParsedCompletion", "Task", "get_task"]
