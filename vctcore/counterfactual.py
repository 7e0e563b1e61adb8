"""Counterfactual pairs: the same synthetic patient (same seed, same initial noise) with one attribute changed.

    pair = counterfactual_pair(gen, {"sex": "M", "age_years": 45, "height_cm": 178, "weight_kg": 70},
                               {"weight_kg": 110}, seed=0)
    pair.before, pair.after          # GeneratedPatient: CT (HU) + merged segmentation, same grid
    pair.diff.hu                     # after - before, HU, float32 (X, Y, Z) RAS+
    pair.diff.changes                # one row per measured quantity and organ volume: before, after, change

:meth:`vctcore.generator.Generator.generate` draws a patient's initial noise from (seed, row index) alone,
so both images start from the same latent noise and differ only through the conditioning. Both are
measured the same way (:func:`vctcore.measured.measure_attributes`). A synthetic cohort's patient ``i``
was made with ``index_offset=i`` and the cohort's seed, steps and guidance (its cohort.json), so passing
those reproduces it as ``before``. No UI imports.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from vctcore.attributes import get_attribute
from vctcore.measured import MEASURED, MeasuredAttributes, measure_attributes, organ_volumes_ml
from vctcore.progress import Progress

#: progress(done, total, what): 4 steps (generate before, generate after, measure before, measure after)
ERR_NO_CHANGE = "counterfactual_pair: name at least one attribute to change"
ERR_NOT_CONDITIONED = ("counterfactual_pair: the generator is conditioned on {conditioned} only; changing {names} "
                       "would give the same image")


@dataclass(frozen=True)
class PairDifference:
    """``hu``: after - before (HU, float32 (X, Y, Z)); ``changes``: quantity, unit, before, after, change;
    ``measured_before`` / ``measured_after``: both measurements in full."""

    hu: np.ndarray
    changes: pd.DataFrame
    measured_before: MeasuredAttributes
    measured_after: MeasuredAttributes


class CounterfactualPair(NamedTuple):
    """``(before, after, diff)``: two :class:`vctcore.generator.GeneratedPatient` and their difference."""

    before: Any
    after: Any
    diff: PairDifference


#: ColorBrewer RdBu reversed (blue: lower after the change, white: unchanged, red: higher)
DIVERGING_HEX = ("#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7", "#f4a582", "#d6604d",
                 "#b2182b", "#67001f")


def difference_rgb(diff: np.ndarray, limit_hu: float) -> np.ndarray:
    """A difference image (any shape, HU) as RGB uint8 (shape + (3,)) on the diverging map :data:`DIVERGING_HEX`:
    -``limit_hu`` and below dark blue, 0 white, +``limit_hu`` and above dark red."""
    if not limit_hu > 0:
        raise ValueError(f"difference_rgb: limit_hu must be > 0, got {limit_hu}")
    stops = np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h in DIVERGING_HEX], np.float64)
    t = np.clip((np.asarray(diff, np.float64) / limit_hu + 1.0) / 2.0, 0.0, 1.0) * (len(stops) - 1)
    lo = np.minimum(t.astype(np.intp), len(stops) - 2)
    frac = (t - lo)[..., None]
    return np.rint(stops[lo] * (1.0 - frac) + stops[lo + 1] * frac).astype(np.uint8)


def check_change(change: Mapping[str, Any], conditioned: tuple[str, ...]) -> None:
    """ValueError unless ``change`` names known attributes of which at least one conditions the generator."""
    if not change:
        raise ValueError(ERR_NO_CHANGE)
    for name in change:
        get_attribute(name)  # ValueError naming the known attributes
    if not any(name in conditioned for name in change):
        raise ValueError(ERR_NOT_CONDITIONED.format(conditioned=", ".join(conditioned), names=", ".join(change)))


def change_table(before: MeasuredAttributes, after: MeasuredAttributes, volumes_before: Mapping[str, float],
                 volumes_after: Mapping[str, float]) -> pd.DataFrame:
    """Every measured quantity, then every organ present in either image (volume, mL): before, after, change."""
    rows = [{"quantity": label, "unit": unit, "before": before.values.get(name, math.nan),
             "after": after.values.get(name, math.nan)} for name, (label, unit) in MEASURED.items()]
    rows += [{"quantity": f"{organ.replace('_', ' ')} volume", "unit": "mL", "before": volumes_before.get(organ, 0.0),
              "after": volumes_after.get(organ, 0.0)}
             for organ in volumes_before if volumes_before.get(organ, 0.0) or volumes_after.get(organ, 0.0)]
    table = pd.DataFrame(rows, columns=["quantity", "unit", "before", "after"])
    table["change"] = table["after"] - table["before"]
    return table


def counterfactual_pair(generator: Any, attributes: Mapping[str, Any], change: Mapping[str, Any], seed: int,
                        steps: int | None = None, *, guidance_scale: float | None = None, sampler: str | None = None,
                        index_offset: int = 0, progress: Progress | None = None) -> CounterfactualPair:
    """Generate ``attributes`` and ``attributes`` updated by ``change`` from the same seed and measure both.

    ``generator``: a :class:`vctcore.generator.Generator`. ``seed`` and ``index_offset``: as in
    :meth:`Generator.generate` (the patient's noise is ``patient_seed(seed, index_offset)``); ``steps``,
    ``guidance_scale`` and ``sampler``: as there (None: the checkpoint's defaults). Raises ValueError when ``change``
    is empty, names an unknown attribute, or only attributes the generator is not conditioned on."""
    check_change(change, tuple(generator.cfg.diffusion.condition_on))
    requests = [dict(attributes), {**attributes, **change}]
    patients = []
    for i, (what, attrs) in enumerate(zip(("before", "after"), requests)):
        if progress is not None:
            progress(i, 4, f"generating {what}")
        (p,) = generator.generate(pd.DataFrame([attrs]), seed=int(seed), steps=steps, guidance_scale=guidance_scale,
                                  sampler=sampler, index_offset=int(index_offset))
        patients.append(p)
    measured = []
    for i, (what, p) in enumerate(zip(("before", "after"), patients)):
        if progress is not None:
            progress(2 + i, 4, f"measuring {what}")
        measured.append(measure_attributes(p.ct, p.seg))
    if progress is not None:
        progress(4, 4, "done")
    before, after = patients
    spacing = tuple(float(s) for s in before.ct.spacing_mm)
    table = change_table(*measured, organ_volumes_ml(before.seg.data, spacing),
                         organ_volumes_ml(after.seg.data, spacing))
    hu = np.asarray(after.ct.data, np.float32) - np.asarray(before.ct.data, np.float32)
    return CounterfactualPair(before, after, PairDifference(hu, table, *measured))
