"""PNG previews of a report's pages (for the app's Report page and for checking a layout by eye).

pypdfium2 (a pdfplumber dependency) renders in-process; without it, poppler's ``pdftoppm`` is used.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


class PreviewError(RuntimeError):
    """No PDF renderer is available, or the file is not a readable PDF."""


def render_pages_png(pdf: str | os.PathLike, *, dpi: int = 100, pages: list[int] | None = None) -> list[bytes]:
    """PNG bytes of the pages of ``pdf`` (1-based page numbers in ``pages``; default all) at ``dpi``."""
    pdf = Path(pdf)
    try:
        import pypdfium2 as pdfium
    except ImportError:
        return _pdftoppm(pdf, dpi, pages)
    try:
        doc = pdfium.PdfDocument(str(pdf))
    except pdfium.PdfiumError as err:
        raise PreviewError(f"{pdf}: not a readable PDF ({err})") from None
    out = []
    try:
        for k in pages or range(1, len(doc) + 1):
            image = doc[k - 1].render(scale=dpi / 72.0).to_pil()
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            out.append(buf.getvalue())
    finally:
        doc.close()
    return out


def _pdftoppm(pdf: Path, dpi: int, pages: list[int] | None) -> list[bytes]:
    exe = shutil.which("pdftoppm")
    if exe is None:
        raise PreviewError("no PDF renderer: install pypdfium2 (pip) or poppler-utils (pdftoppm)")
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([exe, "-png", "-r", str(dpi), str(pdf), f"{tmp}/p"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise PreviewError(f"{pdf}: pdftoppm failed ({proc.stderr.strip().splitlines()[-1:]})")
        files = sorted(Path(tmp).glob("p-*.png"), key=lambda p: int(p.stem.split("-")[-1]))
        chosen = files if pages is None else [files[k - 1] for k in pages]
        return [f.read_bytes() for f in chosen]
