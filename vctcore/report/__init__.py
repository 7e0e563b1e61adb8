"""The PDF bias report of a finished trial (``vct report TRIAL_DIR --out report.pdf``).

It reads only the trial directory (:class:`vctcore.trial.result.TrialResult`, the example slices
under ``examples/``) and the generator's model card the trial names, and computes no new numbers.

    source.py    what the report reads, gathered once; ReportError for a directory that is not a finished trial
    fmt.py       how values are written (numbers, CIs, p-values, attribute names)
    text.py      the words: verdict lines, methods, limitations, notes on absent parts
    results.py   recorded tables as display tables
    tables.py    DataFrames as page-width reportlab tables (wrapping, splitting, repeated headers)
    figures.py   matplotlib figures (Agg)
    story.py     the content in reading order
    document.py  page layout, contents, metadata, atomic write: write_report()
    pages.py     PNG previews of the pages
"""
from __future__ import annotations

from vctcore.report.document import write_report
from vctcore.report.pages import PreviewError, render_pages_png
from vctcore.report.source import ReportError

__all__ = ["PreviewError", "ReportError", "render_pages_png", "write_report"]
