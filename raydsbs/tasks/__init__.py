"""The task registry: ``arith`` and ``arith2`` (embedded, Python) and the paper's benchmarks as YAML specs
(``specs/*.yaml``); any other ``*.yaml`` path is a user's own task (see :mod:`raydsbs.tasks.spec`)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from raydsbs.tasks.arith import ArithTask, TwoStepArithTask
from raydsbs.tasks.base import SPLITS, Example, Exemplar, ParsedCompletion, RejectedRow, Task
from raydsbs.tasks.spec import SpecTask, TaskSpecError, load_spec

SPEC_DIR = Path(str(resources.files("raydsbs.tasks").joinpath("specs")))
TASKS: dict[str, Path | type[Task]] = {
    "arith": ArithTask,
    "arith2": TwoStepArithTask,
    **{path.stem: path for path in sorted(SPEC_DIR.glob("*.yaml"))},
}


class UnknownTaskError(KeyError):
    def __str__(self) -> str:
        return self.args[0]


def is_task_file(name: str) -> bool:
    return name.endswith((".yaml", ".yml"))


def get_task(name: str) -> Task:
    """The registered task ``name``, or the task defined in the YAML file ``name``."""
    if is_task_file(name):
        return SpecTask(load_spec(name), Path(name).parent)
    if name not in TASKS:
        raise UnknownTaskError(
            f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}, or a path to a task .yaml"
        )
    entry = TASKS[name]
    return SpecTask(load_spec(entry), entry.parent) if isinstance(entry, Path) else entry()


__all__ = [
    "SPLITS",
    "TASKS",
    "Example",
    "Exemplar",
    "ParsedCompletion",
    "RejectedRow",
    "Task",
    "TaskSpecError",
    "get_task",
    "is_task_file",
]
