"""The tasks by name; an unknown name answers with the known ones."""

from __future__ import annotations

from cvkit.errors import OptionError
from cvkit.tasks.base import Task, TaskSpec
from cvkit.tasks.classify import Classify
from cvkit.tasks.multilabel import Multilabel

_KNOWN: list[type[Task]] = [Classify, Multilabel]
# localize
from cvkit.tasks.localize import Localize  # noqa: E402

_KNOWN.append(Localize)

# regress
from cvkit.tasks.regress import Regress  # noqa: E402

_KNOWN.append(Regress)

# segment
from cvkit.tasks.segment import Segment  # noqa: E402

_KNOWN.append(Segment)

TASKS: dict[str, type[Task]] = {task.name: task for task in _KNOWN}


def task_names() -> list[str]:
    return list(TASKS)


def create_task(name: str, spec: TaskSpec) -> Task:
    """The task ``name`` for a run with ``spec``'s classes and options."""
    if name not in TASKS:
        raise OptionError(f"--task {name} must be one of {', '.join(TASKS)}")
    return TASKS[name](spec)
