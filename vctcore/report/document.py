"""The PDF: page templates (title page, body pages with header and "page N of M"), contents and
bookmarks, metadata, and the atomic write.

``write_report(trial_dir, out_pdf, progress=None)`` is the one entry point (the CLI and the app call
it). The output is written to a temporary file beside ``out_pdf`` and renamed over it, so an existing
report is replaced whole or not at all.
"""
from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

from reportlab.pdfgen import canvas as pdfcanvas
from reportlab.platypus import BaseDocTemplate, Frame, PageTemplate, Paragraph

from vctcore.progress import Progress
from vctcore.report.source import ReportError, ReportSource, load_source
from vctcore.report.story import build_story
from vctcore.report.style import (FRAME_HEIGHT, FRAME_WIDTH, MARGIN_BOTTOM, MARGIN_X, MUTED, PAGE, RULE, SANS,
                                  register_fonts)

AUTHOR = "vct, virtual clinical trials workbench"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vctcore")
    except PackageNotFoundError:
        return "unknown"


class _NumberedCanvas(pdfcanvas.Canvas):
    """A canvas that knows the page count when it draws the footers (pages are held until save)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._pages: list[dict] = []

    def showPage(self) -> None:  # noqa: N802 (reportlab's name)
        self._pages.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        total = len(self._pages)
        for state in self._pages:
            self.__dict__.update(state)
            if self._pageNumber > 1:
                self.setFont(SANS, 7.5)
                self.setFillColor(MUTED)
                self.drawRightString(PAGE[0] - MARGIN_X, MARGIN_BOTTOM - 24, f"Page {self._pageNumber} of {total}")
            super().showPage()
        super().save()


class _ReportDoc(BaseDocTemplate):
    """Title and body page templates; h1/h2 headings feed the contents and the PDF outline."""

    def __init__(self, path: str, *, header: str, footer: str, **kw) -> None:
        super().__init__(path, pagesize=PAGE, leftMargin=MARGIN_X, rightMargin=MARGIN_X,
                         topMargin=PAGE[1] - MARGIN_BOTTOM - FRAME_HEIGHT, bottomMargin=MARGIN_BOTTOM, **kw)
        self.header, self.footer = header, footer
        frame = Frame(MARGIN_X, MARGIN_BOTTOM, FRAME_WIDTH, FRAME_HEIGHT, id="body", leftPadding=0, rightPadding=0,
                      topPadding=0, bottomPadding=0)
        self.addPageTemplates([PageTemplate("title", [frame], onPage=self._title_page),
                               PageTemplate("body", [frame], onPage=self._body_page)])
        self._heading = 0

    def beforeDocument(self) -> None:  # noqa: N802 (reportlab's name; called at every pass of multiBuild)
        self._heading = 0

    def _title_page(self, canv, doc) -> None:
        canv.saveState()
        canv.setFillColor(MUTED)
        canv.setFont(SANS, 7.5)
        canv.drawString(MARGIN_X, MARGIN_BOTTOM - 24, self.footer)
        canv.restoreState()

    def _body_page(self, canv, doc) -> None:
        canv.saveState()
        top = MARGIN_BOTTOM + FRAME_HEIGHT + 10
        canv.setStrokeColor(RULE)
        canv.setLineWidth(0.5)
        canv.line(MARGIN_X, top - 4, PAGE[0] - MARGIN_X, top - 4)
        canv.setFillColor(MUTED)
        canv.setFont(SANS, 7.5)
        canv.drawString(MARGIN_X, top, self.header)
        canv.line(MARGIN_X, MARGIN_BOTTOM - 12, PAGE[0] - MARGIN_X, MARGIN_BOTTOM - 12)
        canv.drawString(MARGIN_X, MARGIN_BOTTOM - 24, self.footer)
        canv.restoreState()

    def afterFlowable(self, flowable) -> None:  # noqa: N802 (reportlab's name)
        if not isinstance(flowable, Paragraph):
            return
        level = {"h1": 0, "h2": 1}.get(flowable.style.name)
        if level is None:
            return
        title = flowable.getPlainText()
        self._heading += 1
        key = f"h{self._heading}"
        self.canv.bookmarkPage(key)
        self.canv.addOutlineEntry(title, key, level=level, closed=level > 0)
        self.notify("TOCEntry", (level, title, self.page, key))


def _check_output(out: Path) -> None:
    if out.exists() and out.is_dir():
        raise ReportError(f"--out {out} is a directory; give a file name such as {out / 'report.pdf'}")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ReportError(f"--out {out}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ReportError(f"--out {out}: the folder {parent} is not writable")
    if out.exists() and not os.access(out, os.W_OK):
        raise ReportError(f"--out {out}: the file exists and is not writable")


def render(src: ReportSource, out: Path, *, generated: str, progress: Progress | None = None) -> None:
    """Lay out the report of ``src`` into the PDF file ``out`` (written directly)."""
    register_fonts()
    s = src.summary
    title = f"Bias report: {src.result.name}"
    doc = _ReportDoc(str(out), header=f"vct bias report \u00b7 {src.result.name} \u00b7 {src.design} design \u00b7 "
                                      f"task {s.get('task', '')}",
                     footer=f"vct {_version()} \u00b7 from the trial directory {src.result.root.name}",
                     title=title, author=AUTHOR, subject=f"Virtual clinical trial ({src.design} design) of "
                     f"{s.get('provenance', {}).get('model', {}).get('name', 'a model')}: verdicts, tables, figures, "
                     "limitations and provenance", creator=f"vct report (vctcore {_version()})",
                     keywords="virtual clinical trial, bias, radiology AI, vct")
    story = build_story(src, generated, progress)
    from reportlab import rl_config

    a85 = rl_config.useA85
    rl_config.useA85 = 0  # images stored binary: reportlab's pure-Python ASCII85 encoder is slow
    try:
        doc.multiBuild(story, canvasmaker=_NumberedCanvas, maxPasses=6)
    finally:
        rl_config.useA85 = a85


def write_report(trial_dir: str | os.PathLike, out_pdf: str | os.PathLike,
                 progress: Progress | None = None) -> Path:
    """Write the bias report of the finished trial at ``trial_dir`` to ``out_pdf``; returns its path.

    Reads only the trial directory (and the generator's model card it names). Raises
    :class:`ReportError` (one line) when ``trial_dir`` is not a finished trial or ``out_pdf`` cannot be
    written. An existing ``out_pdf`` is replaced atomically. ``progress(done, total, label)`` is called as
    the parts are built.
    """
    out = Path(out_pdf)
    _check_output(out)
    src = load_source(trial_dir)
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent if str(out.parent) else ".")
    os.close(fd)
    try:
        render(src, Path(tmp), generated=generated, progress=progress)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
