"""Plain data for JSON: the one cleaner of what vctcore writes as JSON (trial.json, fidelity.json, configs)."""
from __future__ import annotations

import math
from pathlib import PurePath
from typing import Any


def json_safe(o: Any) -> Any:
    """A copy of ``o`` that :func:`json.dumps` writes as standard JSON: mappings with str keys, tuples as
    lists, numpy scalars (anything with ``.item()``, e.g. a one-element array) as Python numbers, NaN and
    infinities as None, paths as str; everything else unchanged."""
    if isinstance(o, dict):
        return {str(k): json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_safe(v) for v in o]
    if isinstance(o, PurePath):
        return str(o)
    if hasattr(o, "item") and not isinstance(o, (str, bytes)):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o
