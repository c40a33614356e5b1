"""The fleet report: one self-contained HTML page from the run reports, the fleet's
status, the release tags and the secrets audit (``nixify report``)."""

from nixify.report.page import PageData, ReleaseTagRow, render_page

__all__ = ["PageData", "ReleaseTagRow", "render_page"]
