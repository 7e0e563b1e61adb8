"""Measurement of patients from their CT (paper Appendix B).

``measure(ct, seg=None, backend="auto") -> Measurements``: body mass, fat, muscle and bone mass,
BFP and MMP (% of body mass), body volume, height (whole-body scans only), bone density (mean
trabecular HU of L1-L3), L3-level tissue areas, and what the scan covers. Backends: "labels" (a label
map that comes with the CT: fine, merged or TotalSegmentator), "threshold" (HU thresholds),
"totalsegmentator" (when its weights are installed), "auto". Cohorts: :func:`measure_cohort`.

Accuracy on phantoms (default 6 x 6 x 8 mm grid, see tests/test_measure*.py): with the phantom's own
labels, mass, BFP and MMP equal the builder's calibrated values (so within 3 % / 1.5 points of the
request). The threshold backend's BFP is close, its MMP is biased high because thresholds cannot
tell organs from muscle (documented in tests/test_measure.py).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Exported lazily: vctcore.measure.composition is imported by the phantom builder, which should not
# pay for (or cycle through) the whole measurement stack.
_EXPORTS = {
    "measure": "api", "BACKENDS": "backends", "BackendError": "backends", "Segmentation": "backends",
    "segment": "backends", "measure_cohort": "cohort", "Coverage": "coverage", "MeasureError": "record",
    "Measurements": "record",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from vctcore.measure.api import measure  # noqa: F401
    from vctcore.measure.backends import BACKENDS, BackendError, Segmentation, segment  # noqa: F401
    from vctcore.measure.cohort import measure_cohort  # noqa: F401
    from vctcore.measure.coverage import Coverage  # noqa: F401
    from vctcore.measure.record import MeasureError, Measurements  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"vctcore.measure.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'vctcore.measure' has no attribute {name!r}")
