"""DataFrames as reportlab tables that never overflow the page.

Every cell is a wrapping Paragraph. Column widths come from the text: each column gets at least its
longest word (capped: longer tokens such as hashes and paths are split by reportlab) and at most its
longest line, scaled to the frame's width. When even the narrowest columns do not fit, the font shrinks
(down to 6.5 pt); when they still do not fit, the table is split into several tables, one after the
other, each repeating the key columns. Long tables
break across pages with the header row repeated (``repeatRows=1``).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from xml.sax.saxutils import escape

import pandas as pd
from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT, TA_RIGHT
from reportlab.lib.styles import ParagraphStyle
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.platypus import Flowable, Paragraph, Spacer, Table, TableStyle

from vctcore.report.style import (ACCENT, FRAME_WIDTH, HEADER_BG, MONO, SANS, SANS_BOLD, ZEBRA, register_fonts,
                                  styles)

#: where a cell's text may break (not at no-break spaces, which keep intervals and "mean ± SD" whole)
BREAKS = re.compile(r"[ \t\n]+")
PAD = 3.0  # points of cell padding, each side
SLACK = 2.0  # points added to every measured width (reportlab's line breaking rounds)
MAX_MIN_SHARE = 0.3  # no column's minimum width exceeds this share of the frame (long tokens are split)
MIN_FONT = 6.5  # points: tables shrink their font down to this before they split
SHORT_HEADER = 60.0  # points: a header up to this wide asks for one line
STRETCH_FROM = 0.6  # tables at least this share of the frame wide are widened to all of it


def cell_text(v: object) -> str:
    """A cell value as plain text ('' for None/NaN)."""
    if v is None:
        return ""
    if isinstance(v, float) and v != v:
        return ""
    return str(v)


def _looks_numeric(values: Sequence[str]) -> bool:
    seen = False
    for v in values:
        v = v.replace("\u00a0", " ").strip().replace("\u2212", "-")
        if v in ("", "\u2014"):
            continue
        seen = True
        head = v.lstrip("[<>=+- ").split(",")[0].split(" ")[0].rstrip("]%")
        try:
            float(head)
        except ValueError:
            return False
    return seen


def _widths(texts: list[str], head: str, font: str, bold: str, size: float, width: float) -> tuple[float, float]:
    """(minimum, preferred) width of a column in points, padding included."""
    words = [w for t in texts for w in BREAKS.split(t)] or [""]
    longest_word = max(stringWidth(w, font, size) for w in words)
    longest_line = max([stringWidth(t, font, size) for t in texts] or [0.0])
    head_words = BREAKS.split(head) or [""]
    head_word = max(stringWidth(w, bold, size) for w in head_words)
    head_full = stringWidth(head, bold, size)
    low = min(max(longest_word, head_word), width * MAX_MIN_SHARE)
    head_pref = head_full if head_full <= SHORT_HEADER else min(head_full, 1.4 * max(longest_line, head_word))
    pref = max(min(longest_line, width * 0.6), head_word, head_pref)
    return low + 2 * PAD + SLACK, max(pref, low) + 2 * PAD + SLACK


def _groups(mins: list[float], key: int, width: float) -> list[list[int]]:
    """Column indices per table: the first ``key`` columns in each, the others greedily while they fit."""
    key = min(key, len(mins))
    base = list(range(key))
    groups, cur, used = [], list(base), sum(mins[:key])
    for j in range(key, len(mins)):
        if cur != base and used + mins[j] > width:
            groups.append(cur)
            cur, used = list(base), sum(mins[:key])
        cur.append(j)
        used += mins[j]
    groups.append(cur)
    return groups


def _allocate(mins: list[float], prefs: list[float], width: float, stretch: bool | None) -> list[float]:
    total_pref = sum(prefs)
    if total_pref <= width:
        if stretch is None:
            stretch = total_pref >= STRETCH_FROM * width
        if not stretch:
            return prefs
        extra = width - total_pref
        return [p + extra * p / total_pref for p in prefs]
    slack = sum(p - m for p, m in zip(prefs, mins))
    f = max(0.0, (width - sum(mins)) / slack) if slack > 0 else 0.0
    out = [m + f * (p - m) for m, p in zip(mins, prefs)]
    scale = min(1.0, width / sum(out))
    return [w * scale for w in out]


def df_table(df: pd.DataFrame, *, width: float = FRAME_WIDTH, font_size: float = 7.5, key_columns: int = 1,
             markup: Sequence[str] = (), mono: Sequence[str] = (), align: dict[str, str] | None = None,
             rules_before: Sequence[int] = (), stretch: bool | None = None) -> list[Flowable]:
    """Flowables showing ``df`` within ``width`` points: one table, or several when it is too wide.

    ``markup``: columns whose values are reportlab paragraph markup (others are escaped);
    ``mono``: columns set in the monospaced font (hashes, paths); ``align``: column -> "left"|"right"
    (default: right for numeric-looking columns); ``rules_before``: data row positions that get a
    rule above them (group separators); ``stretch``: widen narrow tables to the full width (default:
    when their natural width is at least 60% of it).
    """
    register_fonts()
    cols = [str(c) for c in df.columns]
    texts = {c: [cell_text(v) for v in df[col]] for c, col in zip(cols, df.columns)}
    align = dict(align or {})
    for c in cols:
        align.setdefault(c, "right" if c not in markup and _looks_numeric(texts[c]) else "left")
    sizes = [font_size - 0.5 * k for k in range(4) if font_size - 0.5 * k >= MIN_FONT] or [font_size]
    for font_size in sizes:  # a smaller font before a split
        mins, prefs = _column_widths(cols, texts, markup, mono, font_size, width)
        groups = _groups(mins, key_columns, width)
        if len(groups) == 1:
            break
    out: list[Flowable] = []
    for k, idx in enumerate(groups):
        if len(groups) > 1:
            note = "" if k == 0 else " (continued)"
            out.append(Paragraph(f"Part {k + 1} of {len(groups)}{note}: columns "
                                 + escape(", ".join(cols[i] for i in idx)), styles()["small"]))
        widths = _allocate([mins[i] for i in idx], [prefs[i] for i in idx], width, stretch)
        out.append(_table([cols[i] for i in idx], texts, widths, font_size, markup, mono, align, rules_before))
        out.append(Spacer(1, 6))
    return out


def _column_widths(cols: list[str], texts: dict[str, list[str]], markup: Sequence[str], mono: Sequence[str],
                   font_size: float, width: float) -> tuple[list[float], list[float]]:
    """(minimum widths, preferred widths) of the columns at ``font_size``."""
    dims = []
    for c in cols:
        font = MONO if c in mono else (SANS_BOLD if c in markup else SANS)
        shown = [_strip_markup(t) for t in texts[c]] if c in markup else texts[c]
        dims.append(_widths(shown, c, font, SANS_BOLD, font_size, width))
    return [d[0] for d in dims], [d[1] for d in dims]


def _strip_markup(text: str) -> str:
    return re.sub(r"<[^>]+>", "", text)


def _para_styles(font_size: float) -> dict[str, ParagraphStyle]:
    base = styles()["cell"]
    lead = font_size * 1.23
    return {
        "left": ParagraphStyle(f"cl{font_size}", parent=base, fontSize=font_size, leading=lead, alignment=TA_LEFT),
        "right": ParagraphStyle(f"cr{font_size}", parent=base, fontSize=font_size, leading=lead, alignment=TA_RIGHT),
        "head_left": ParagraphStyle(f"hl{font_size}", parent=styles()["cell_head"], fontSize=font_size, leading=lead,
                                    alignment=TA_LEFT),
        "head_right": ParagraphStyle(f"hr{font_size}", parent=styles()["cell_head"], fontSize=font_size,
                                     leading=lead, alignment=TA_RIGHT),
    }


def _table(cols: list[str], texts: dict[str, list[str]], widths: list[float], font_size: float,
           markup: Sequence[str], mono: Sequence[str], align: dict[str, str], rules_before: Sequence[int]) -> Table:
    ps = _para_styles(font_size)
    header = [Paragraph(escape(c), ps["head_right" if align[c] == "right" else "head_left"]) for c in cols]
    n = len(texts[cols[0]]) if cols else 0
    rows = [header]
    for i in range(n):
        row = []
        for c in cols:
            t = texts[c][i]
            body = t if c in markup else escape(t)
            if c in mono and body:
                body = f'<font face="{MONO}">{body}</font>'
            row.append(Paragraph(body, ps[align[c]]))
        rows.append(row)
    table = Table(rows, colWidths=widths, repeatRows=1, hAlign="LEFT")
    cmds = [("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), PAD), ("RIGHTPADDING", (0, 0), (-1, -1), PAD),
            ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
            ("BACKGROUND", (0, 0), (-1, 0), HEADER_BG),
            ("LINEABOVE", (0, 0), (-1, 0), 0.9, ACCENT), ("LINEBELOW", (0, 0), (-1, 0), 0.6, ACCENT),
            ("LINEBELOW", (0, -1), (-1, -1), 0.9, ACCENT)]
    if n:
        cmds.append(("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, ZEBRA]))
    for r in rules_before:
        if 0 < r < n:
            cmds.append(("LINEABOVE", (0, r + 1), (-1, r + 1), 0.5, ACCENT))
    table.setStyle(TableStyle(cmds))
    return table


def key_value_table(pairs: Sequence[tuple[str, str]], *, width: float = FRAME_WIDTH, font_size: float = 8.5,
                    key_share: float = 0.27, mono_keys: Sequence[str] = (), markup: bool = False) -> Table:
    """A two-column table of labels and plain-text values (``markup``: values are paragraph markup);
    values of the keys in ``mono_keys`` are set in the monospaced font."""
    ps = _para_styles(font_size)
    rows = []
    for k, v in pairs:
        body = v if markup else escape(v)
        body = f'<font face="{MONO}">{body}</font>' if k in mono_keys else body
        rows.append([Paragraph(escape(k), ps["head_left"]), Paragraph(body, ps["left"])])
    table = Table(rows, colWidths=[width * key_share, width * (1 - key_share)], hAlign="LEFT")
    table.setStyle(TableStyle([
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), PAD), ("RIGHTPADDING", (0, 0), (-1, -1), PAD),
        ("TOPPADDING", (0, 0), (-1, -1), 2.5), ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
        ("LINEBELOW", (0, 0), (-1, -2), 0.3, colors.HexColor("#c8d0d8")),
        ("LINEABOVE", (0, 0), (-1, 0), 0.9, ACCENT), ("LINEBELOW", (0, -1), (-1, -1), 0.9, ACCENT),
    ]))
    return table
