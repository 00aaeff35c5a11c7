"""Reports: one self-contained HTML page (and a Markdown twin) of a `sola train` run or a `sola compare` directory.

    from sola.viz.report import write_report
    write_report("compare_out")   # -> compare_out/report.html, report.md, report_files/
"""

from sola.viz.report.page import build_report, report_kind, write_report

__all__ = ["build_report", "report_kind", "write_report"]
