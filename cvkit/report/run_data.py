"""One run as its page reads it: its files, its dataset, its evaluation on the split, and what is loaded
from them, each read or computed once and only when a section asks for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cvkit.errors import ManifestError
from cvkit.files.atomic import read_csv_checked
from cvkit.files.config import TrainConfig
from cvkit.files.dataset import is_dataset
from cvkit.files.jsonio import read_json
from cvkit.files.run import ModelInfo
from cvkit.report.context import ReportContext

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from cvkit.data.cache import SplitData
    from cvkit.runtime import LoadedRun
    from cvkit.tasks import Task


@dataclass
class RunData:
    run: Path
    ctx: ReportContext
    model: ModelInfo
    config: TrainConfig | None = None
    _splits: dict[str, Any] = field(default_factory=dict)
    no_epochs: str = ""  # why the run's epochs cannot be shown

    @classmethod
    def read(cls, run: Path, ctx: ReportContext) -> "RunData":
        return cls(run, ctx, ModelInfo.read(run), TrainConfig.read_if_present(run))

    @property
    def rerun(self) -> str:
        return f"rerun 'cvkit evaluate {self.run} --split {self.ctx.split}'"

    @cached_property
    def dataset(self) -> Path | None:
        """``--data``, else the dataset the run was trained on (None when it is no longer there)."""
        if self.ctx.data is not None:
            return self.ctx.data
        found = Path(self.config.data) if self.config is not None and self.config.data else None
        return found if found is not None and is_dataset(found) else None

    @cached_property
    def task(self) -> "Task":
        from cvkit.tasks import TaskSpec, create_task

        return create_task(self.model.task, TaskSpec(self.model.classes, self.model.loss, state=self.model.task_state))

    @cached_property
    def loaded(self) -> "LoadedRun":
        from cvkit.device import resolve_device
        from cvkit.runtime import load_run

        return load_run(self.run, resolve_device(self.ctx.device))

    @cached_property
    def evaluation(self) -> Path:
        """The evaluate folder of the split: RUN/eval_SPLIT when current, else computed (ctx.evaluation)."""
        return self.ctx.evaluation(self.run)

    def shown(self, path: Path) -> str:
        """A path as the page names it: what the report wrote, relative to the page (its folder is a stage
        folder until the report is complete), anything else as it is."""
        try:
            return f"{Path(path).relative_to(self.ctx.writer.folder).as_posix()} (in this report's folder)"
        except ValueError:
            return str(path)

    @cached_property
    def metrics(self) -> dict[str, Any]:
        """The evaluation's metrics.json."""
        return read_json(self.evaluation / "metrics.json", self.rerun)

    def table(self, name: str, columns: tuple[str, ...] = ()) -> "pd.DataFrame":
        """A CSV of the evaluation (predictions.csv, top_losses.csv, ...), its ``columns`` checked."""
        return read_csv_checked(self.evaluation / name, columns, self.rerun, dtype={"path": str})

    def split(self, name: str | None = None) -> "SplitData":
        """A split of the dataset (default: the report's) at the run's input size, from the dataset's cache."""
        from cvkit.data import load_split

        name = name or self.ctx.split
        if name not in self._splits:
            if self.dataset is None:
                raise ManifestError(f"the dataset {self.config.data if self.config else '?'} of {self.run} is not "
                                    f"there; pass --data DATASET")
            size = None if self.model.score_maps else (int(self.model.input_size[0]), int(self.model.input_size[1]))
            self._splits[name] = load_split(self.dataset, name, size)
        return self._splits[name]

    @cached_property
    def probabilities(self) -> "np.ndarray":
        """Each image of the split's class probabilities (N x K, in the split's order) from predictions.csv."""
        import numpy as np

        columns = [f"prob_{name}" for name in self.model.classes]
        frame = self.table("predictions.csv", ("path", *columns))
        probs = frame[columns].to_numpy(np.float64)
        paths, wanted = frame["path"].tolist(), self.split().paths
        if paths == wanted:
            return probs
        where = {p: i for i, p in enumerate(paths)}
        missing = next((p for p in wanted if p not in where), None)
        if missing is not None:
            raise ManifestError(f"{self.evaluation / 'predictions.csv'} has no row for {missing[:120]} of the "
                                f"{self.ctx.split} split; {self.rerun}")
        return probs[[where[p] for p in wanted]]

    @cached_property
    def epochs(self) -> "pd.DataFrame | None":
        """The run's metrics.csv; None where it has none or it cannot be read (``no_epochs`` says why): a run
        directory of model.json and weights alone still has a page, without its curves."""
        from cvkit.files.run import read_metrics

        try:
            return read_metrics(self.run)
        except ManifestError as e:
            self.no_epochs = str(e)
            return None
