"""The task layer: what a run predicts, and everything that differs between tasks.

A task is one module with one :class:`~cvkit.tasks.base.Task` subclass, registered here by name. The
trainer, evaluate, predict and crossval ask it for the head's size, the training targets, the loss,
the metric that picks the best epoch, and the probabilities of the outputs; none of them names a task.
``dataset.json`` records the task a dataset was prepared for, ``model.json`` the task of a run.
"""

from __future__ import annotations

from cvkit.tasks.base import Task, TaskSpec
from cvkit.tasks.registry import TASKS, create_task, task_names

__all__ = ["TASKS", "Task", "TaskSpec", "create_task", "task_names"]
