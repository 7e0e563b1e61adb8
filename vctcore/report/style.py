"""The report's look: page geometry, fonts (DejaVu, shipped with matplotlib: full Unicode, embedded,
no download), paragraph styles and colours. One place, so text, tables and figures agree."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER, TA_LEFT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm

PAGE = A4
MARGIN_X, MARGIN_TOP, MARGIN_BOTTOM = 18 * mm, 20 * mm, 18 * mm
#: the text frame's width in points (tables and figures never exceed it)
FRAME_WIDTH = PAGE[0] - 2 * MARGIN_X
FRAME_HEIGHT = PAGE[1] - MARGIN_TOP - MARGIN_BOTTOM

SANS, SANS_BOLD, SANS_ITALIC, MONO = "DejaVuSans", "DejaVuSans-Bold", "DejaVuSans-Oblique", "DejaVuSansMono"
_FILES = {SANS: "DejaVuSans.ttf", SANS_BOLD: "DejaVuSans-Bold.ttf", SANS_ITALIC: "DejaVuSans-Oblique.ttf",
          MONO: "DejaVuSansMono.ttf"}

INK = colors.HexColor("#1a1a1a")
MUTED = colors.HexColor("#555555")
ACCENT = colors.HexColor("#1f4e79")
RULE = colors.HexColor("#9aa5b1")
HEADER_BG = colors.HexColor("#e3e9f0")
ZEBRA = colors.HexColor("#f6f8fa")
NOTE_BG = colors.HexColor("#fff7e0")
NOTE_BORDER = colors.HexColor("#d9a400")
#: verdict -> colour of its label
VERDICT_COLOURS = {"acceptable": colors.HexColor("#1b7837"), "inconclusive": colors.HexColor("#b35806"),
                   "significant degradation": colors.HexColor("#b2182b")}


@lru_cache(maxsize=1)
def register_fonts() -> None:
    """Register the DejaVu fonts (from matplotlib's data directory) with reportlab, once."""
    import matplotlib
    from reportlab.lib.fonts import addMapping
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    for name, file in _FILES.items():
        pdfmetrics.registerFont(TTFont(name, str(folder / file)))
    addMapping(SANS, 0, 0, SANS)
    addMapping(SANS, 1, 0, SANS_BOLD)
    addMapping(SANS, 0, 1, SANS_ITALIC)
    addMapping(SANS, 1, 1, SANS_BOLD)


@lru_cache(maxsize=1)
def styles() -> dict[str, ParagraphStyle]:
    """Named paragraph styles: title, subtitle, h1, h2, body, small, caption, cell, cell_head, mono, note."""
    register_fonts()
    body = ParagraphStyle("body", fontName=SANS, fontSize=9.5, leading=13.2, textColor=INK, alignment=TA_LEFT,
                          spaceAfter=5)
    return {
        "title": ParagraphStyle("title", parent=body, fontName=SANS_BOLD, fontSize=22, leading=27,
                                textColor=ACCENT, spaceAfter=6),
        "subtitle": ParagraphStyle("subtitle", parent=body, fontSize=12.5, leading=16, textColor=MUTED,
                                   spaceAfter=14),
        "h1": ParagraphStyle("h1", parent=body, fontName=SANS_BOLD, fontSize=14, leading=18, textColor=ACCENT,
                             spaceBefore=4, spaceAfter=8, keepWithNext=1),
        "h2": ParagraphStyle("h2", parent=body, fontName=SANS_BOLD, fontSize=10.5, leading=14, textColor=ACCENT,
                             spaceBefore=8, spaceAfter=4, keepWithNext=1),
        "body": body,
        "bullet": ParagraphStyle("bullet", parent=body, leftIndent=12, bulletIndent=2, spaceAfter=4,
                                 bulletFontName=SANS),
        "small": ParagraphStyle("small", parent=body, fontSize=8, leading=10.5, textColor=MUTED),
        "caption": ParagraphStyle("caption", parent=body, fontSize=8, leading=10.5, textColor=MUTED,
                                  spaceBefore=2, spaceAfter=10),
        "cell": ParagraphStyle("cell", parent=body, fontSize=7.5, leading=9.2, spaceAfter=0),
        "cell_head": ParagraphStyle("cell_head", parent=body, fontName=SANS_BOLD, fontSize=7.5, leading=9.2,
                                    spaceAfter=0),
        "mono": ParagraphStyle("mono", parent=body, fontName=MONO, fontSize=6.8, leading=8.4, spaceAfter=6),
        "note": ParagraphStyle("note", parent=body, fontSize=9, leading=12.5, backColor=NOTE_BG,
                               borderColor=NOTE_BORDER, borderWidth=0.6, borderPadding=6, spaceBefore=6,
                               spaceAfter=12),
        "centre": ParagraphStyle("centre", parent=body, alignment=TA_CENTER),
    }
