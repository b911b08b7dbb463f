"""``cvkit report``: one static page that shows a run, compares several, or sums up a crossval folder.

The page is built in a stage folder and takes ``--out``'s place whole when it is complete. What the
commands already wrote is reused; what is missing is computed through the same library functions
(``evaluate``, ``cam``, ...) into ``OUT/computed/`` and listed in the page and on stderr.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from cvkit.checks import check_batch_size
from cvkit.errors import OptionError
from cvkit.files.dataset import SPLITS, is_dataset
from cvkit.files.lock import releasing
from cvkit.files.outputs import check_out, replacing
from cvkit.files.report import PAGE, PageWriter, own_report
from cvkit.files.run import ModelInfo
from cvkit.report.context import ReportContext
from cvkit.report.html import el, section
from cvkit.report.page import render


@dataclass
class ReportResult:
    out: Path  # the report folder
    page: Path  # its index.html
    kind: str  # "run", "compare" or "crossval"
    computed: list[str] = field(default_factory=list)  # what the report computed, in words


def is_crossval(folder: str | os.PathLike) -> bool:
    return (Path(folder) / "crossval.json").is_file()


def _kind(runs: list[Path]) -> str:
    for run in runs:
        if not run.is_dir():
            raise OptionError(f"{run} is not a folder; give a run directory (from 'cvkit train') or a crossval folder")
        if not ModelInfo.present(run) and not is_crossval(run):
            raise OptionError(f"{run} is neither a run directory (no model.json) nor a crossval folder (no "
                              f"crossval.json); give the folder 'cvkit train' or 'cvkit crossval' wrote")
    if len(runs) == 1:
        return "crossval" if is_crossval(runs[0]) else "run"
    if any(is_crossval(run) for run in runs):
        raise OptionError("a crossval folder is reported on its own; give it as the only argument")
    return "compare"


@releasing  # the --out lock check_out takes is given up on return
def report(runs: list[str | os.PathLike], data: str | os.PathLike | None = None, split: str = "test",
           out: str | os.PathLike | None = None, single_file: bool = False, neighbours: int = 0, top: int = 8,
           device: str = "auto", batch_size: int = 512) -> ReportResult:
    """Write the report of ``runs`` into ``out`` (default ``RUN/report``, or ``CROSSVAL/report``; required
    for several runs): ``index.html`` with its pictures in ``images/`` (embedded with ``single_file``)."""
    if not runs:
        raise OptionError("give at least one RUN directory (or a crossval folder)")
    paths = [Path(r) for r in runs]
    if split not in SPLITS:
        raise OptionError(f"--split {split} must be one of {', '.join(SPLITS)}")
    if top < 0 or top > 64:
        raise OptionError(f"--top {top} must be between 0 and 64 (the number of worst images shown)")
    if neighbours < 0 or neighbours > 16:
        raise OptionError(f"--neighbours {neighbours} must be between 0 and 16")
    check_batch_size(batch_size)
    if data is not None and not is_dataset(data):
        raise OptionError(f"--data {data} is not a dataset directory (no manifest.csv); pass the folder "
                          f"'cvkit prepare' wrote")
    kind = _kind(paths)
    if out is None:
        if kind == "compare":
            raise OptionError("several runs need --out DIR: the comparison belongs to none of them")
        out = paths[0] / "report"
    out = check_out(out, reads=[*paths, *([data] if data is not None else [])], own=own_report, force=True)
    with replacing(out) as stage:
        writer = PageWriter(stage, single_file)
        ctx = ReportContext(writer, split, Path(data) if data is not None else None, device, batch_size, top,
                            neighbours)
        if kind == "run":
            from cvkit.report.run_page import run_page

            title, subtitle, parts = run_page(paths[0], ctx)
        elif kind == "compare":
            from cvkit.report.compare import compare_page

            title, subtitle, parts = compare_page(paths, ctx)
        else:
            from cvkit.report.crossval_page import crossval_page

            title, subtitle, parts = crossval_page(paths[0], ctx)
        sections = [section(label, body, id=anchor) for anchor, label, body in parts]
        if ctx.computed:
            sections.append(section("What this report computed", el("ul", *(el("li", m) for m in ctx.computed)),
                                    id="computed", note="Files no command had written; they are in computed/."))
        writer.write_page(render(title, subtitle, sections, [(anchor, label) for anchor, label, _ in parts]))
        writer.write_summary({"kind": kind, "runs": [str(p) for p in paths], "split": split,
                              "data": str(data) if data is not None else None, "single_file": single_file,
                              "computed": ctx.computed})
    return ReportResult(out, out / PAGE, kind, ctx.computed)
