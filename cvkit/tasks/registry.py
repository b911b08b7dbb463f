"""The tasks by name; an unknown name answers with the known ones."""

from __future__ import annotations

from cvkit.errors import OptionError
from cvkit.tasks.base import Task, TaskSpec
from cvkit.tasks.classify import Classify
from cvkit.tasks.multilabel import Multilabel

TASKS: dict[str, type[Task]] = {task.name: task for task in (Classify, Multilabel)}


def task_names() -> list[str]:
    return list(TASKS)


def create_task(name: str, spec: TaskSpec) -> Task:
    """The task ``name`` for a run with ``spec``'s classes and options."""
    if name not in TASKS:
        raise OptionError(f"--task {name} must be one of {', '.join(TASKS)}")
    return TASKS[name](spec)
