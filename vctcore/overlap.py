"""Dice overlap between two label maps, per class and averaged (paper section 1.3, Table 1).

Conventions: for class c, Dice = 2 |A_c & B_c| / (|A_c| + |B_c|). A class absent from both maps has
no Dice (NaN, left out of every average); a class present in only one map has Dice 0. The cohort
figure is the paper's: per class, the mean over patients (NaN skipped); the average is the mean of
the per-class means over classes that have a value.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from vctcore.labels import MERGED_CLASSES, ORGAN_CLASSES


def dice_per_class(a: np.ndarray, b: np.ndarray, classes: Iterable[int] = ORGAN_CLASSES) -> dict[str, float]:
    """Dice of each class (name from ``MERGED_CLASSES`` or ``str(c)``) between label arrays of one shape."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"label maps differ in shape: {a.shape} vs {b.shape}")
    classes = list(classes)
    n = max([*classes, int(a.max(initial=0)), int(b.max(initial=0))]) + 1
    ca = np.bincount(a.ravel().astype(np.int64), minlength=n)
    cb = np.bincount(b.ravel().astype(np.int64), minlength=n)
    same = a == b
    inter = np.bincount(a[same].ravel().astype(np.int64), minlength=n)
    out = {}
    for c in classes:
        total = ca[c] + cb[c]
        out[MERGED_CLASSES.get(c, str(c))] = float(2.0 * inter[c] / total) if total else float("nan")
    return out


def mean_dice(per_class: Mapping[str, float]) -> float:
    """Mean over the classes that have a Dice (NaN when none has)."""
    vals = [v for v in per_class.values() if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def cohort_dice(per_patient: Sequence[Mapping[str, float]]) -> dict[str, object]:
    """Per class mean and SD over patients, the number of patients with a value, and the class average."""
    names = list(dict.fromkeys(k for d in per_patient for k in d))
    per_class, sd, count = {}, {}, {}
    for name in names:
        vals = np.array([d.get(name, np.nan) for d in per_patient], dtype=float)
        vals = vals[np.isfinite(vals)]
        per_class[name] = float(vals.mean()) if vals.size else float("nan")
        sd[name] = float(vals.std(ddof=1)) if vals.size > 1 else float("nan")
        count[name] = int(vals.size)
    return {"mean": mean_dice(per_class), "per_class": per_class, "sd_per_class": sd, "n_per_class": count}
