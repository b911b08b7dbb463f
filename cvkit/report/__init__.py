"""``cvkit report``: the page that shows a run, a comparison of runs or a crossval folder."""

from cvkit.report.command import ReportResult, report

__all__ = ["ReportResult", "report"]
