"""How the report writes values: numbers, intervals, p-values, attribute and sample-type names.

Formatting only: every value shown comes from the trial directory as recorded.
"""
from __future__ import annotations

import math
from typing import Any

from vctcore.attributes import ATTRIBUTES

#: display names of the sample types a trial records
SAMPLE_TYPE_LABELS = {"real": "Real", "reconstructed": "Reconstructed", "synthetic": "Synthetic",
                      "synthetic_rebiased": "Synthetic (re-biased)", "real_weighted": "Real (weighted)"}
DASH = "\u2014"
#: a no-break space: a formatted interval or "mean ± SD" stays on one line in a table cell
NBSP = "\u00a0"


def missing(v: Any) -> bool:
    """None, NaN or an empty string."""
    if v is None:
        return True
    if isinstance(v, str):
        return v.strip() == "" or v.strip().lower() == "nan"
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return False


def num(v: Any, digits: int = 2) -> str:
    """``v`` with ``digits`` decimals; an em dash when missing."""
    if missing(v):
        return DASH
    try:
        return f"{float(v):.{digits}f}"
    except (TypeError, ValueError):
        return str(v)


def signed(v: Any, digits: int = 2) -> str:
    """``v`` with an explicit sign (+1.20, -0.40); an em dash when missing."""
    return DASH if missing(v) else f"{float(v):+.{digits}f}"


def ci(low: Any, high: Any, digits: int = 2) -> str:
    """A confidence interval as ``[low, high]``; an em dash when either end is missing."""
    if missing(low) or missing(high):
        return DASH
    return f"[{float(low):.{digits}f},{NBSP}{float(high):.{digits}f}]"


def pval(p: Any) -> str:
    """A p-value with 3 decimals, ``< 0.001`` below that; an em dash when missing."""
    if missing(p):
        return DASH
    p = float(p)
    return f"<{NBSP}0.001" if p < 0.001 else f"{p:.3f}"


def pm(mean: Any, sd: Any, digits: int = 2) -> str:
    """``mean ± sd`` on one line; an em dash when the mean is missing."""
    return DASH if missing(mean) else f"{num(mean, digits)}{NBSP}\u00b1{NBSP}{num(sd, digits)}"


def integer(v: Any) -> str:
    return DASH if missing(v) else str(int(round(float(v))))


def attribute(name: str, unit: bool = True) -> str:
    """An attribute's display name, e.g. ``bfp_pct`` -> ``Body fat (%)``; unknown names as given."""
    a = ATTRIBUTES.get(name)
    if a is None:
        return str(name)
    return f"{a.label} ({a.unit})" if unit and a.unit else a.label


def attributes(names: list[str] | tuple[str, ...]) -> str:
    """Display names joined by commas (no units)."""
    return ", ".join(attribute(n, unit=False) for n in names)


def sample_type(name: str) -> str:
    return SAMPLE_TYPE_LABELS.get(str(name), str(name))


def error_unit(unit: str) -> str:
    """The unit of an error on a target measured in ``unit`` (``%`` -> ``pp``, percentage points)."""
    return "pp" if unit.strip() == "%" else unit.strip()


def target_name(target: str) -> str:
    """The task's display name, e.g. ``bfp_pct`` -> ``Body fat (%)``."""
    return attribute(target)


def short_hash(h: Any, n: int = 12) -> str:
    return DASH if missing(h) else str(h)[:n]


def verdict_label(v: Any) -> str:
    """A verdict as recorded ("acceptable", "inconclusive", "significant degradation"); a dash if none."""
    return DASH if missing(v) else str(v)
