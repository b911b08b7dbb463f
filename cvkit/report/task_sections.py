"""The run page's ``metrics`` and ``worst`` sections for the tasks beyond one class per image: multilabel,
localize, regress (keypoints too) and segment.

Each task's module (``task_multilabel``, ``task_localize``, ``task_regress``, ``task_segment``) reads
what ``cvkit evaluate`` wrote for the split (metrics.json, the task's per-class or per-target table,
predictions.csv and its pictures: the task's ``write_evaluation``) and draws what evaluate does not keep,
each worst image with its true and predicted targets, from the dataset's cache (a segment run's masks
of those images are predicted again: evaluate keeps none).
"""

from __future__ import annotations

from pathlib import Path

from cvkit.files.run import ModelInfo
from cvkit.report import task_localize, task_multilabel, task_regress, task_segment
from cvkit.report.context import ReportContext
from cvkit.report.task_common import Part, read_metrics
from cvkit.tasks import TASKS
from cvkit.tasks.localize import Localize
from cvkit.tasks.multilabel import Multilabel
from cvkit.tasks.regress import Regress
from cvkit.tasks.segment import Segment

# Keyed by the task's class (the registry maps model.json's task to it), so no task is named here.
BUILDERS = {Multilabel: task_multilabel.parts, Localize: task_localize.parts, Regress: task_regress.parts,
            Segment: task_segment.parts}


def task_parts(run: Path, ctx: ReportContext, model: ModelInfo, evaluation: Path) -> list[Part]:
    """The ``metrics`` and ``worst`` parts of the page of ``run``, a multilabel, localize, regress or segment
    run, from ``evaluation`` (its evaluate folder on the split: ``ctx.evaluation(run)``)."""
    build = BUILDERS.get(TASKS.get(model.task))
    if build is None:
        raise ValueError(f"task_parts draws the tasks {', '.join(c.name for c in BUILDERS)}, not {model.task}")
    evaluation = Path(evaluation)
    return build(Path(run), ctx, model, evaluation, read_metrics(evaluation))


__all__ = ["BUILDERS", "task_parts"]
