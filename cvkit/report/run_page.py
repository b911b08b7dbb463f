"""The page of one run: what it is, how it trained, how it scores on the split, where it fails."""

from __future__ import annotations

from pathlib import Path

from cvkit.files.run import ModelInfo
from cvkit.report.context import ReportContext
from cvkit.report.html import Markup, definitions

Part = tuple[str, str, Markup]  # (anchor, title, body)


def run_section(run: Path, ctx: ReportContext) -> Markup:
    model = ModelInfo.read(run)
    return definitions([("run", str(run)), ("task", model.task), ("architecture", model.arch),
                        ("classes", ", ".join(model.classes)), ("best epoch", str(model.epoch))])


def run_page(run: Path, ctx: ReportContext) -> tuple[str, str, list[Part]]:
    """The title, subtitle and sections of a run's page."""
    model = ModelInfo.read(run)
    return (f"cvkit report: {run.name}", f"{model.task} · {model.arch} · {ctx.split} split",
            [("run", "The run", run_section(run, ctx))])
