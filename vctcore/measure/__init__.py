"""Measurement of patients from their CT (paper Appendix B).

``measure(ct, seg=None, backend="auto") -> Measurements``: body mass, fat, muscle and bone mass,
BFP and MMP (% of body mass), body volume, height (whole-body scans only), bone density (mean
trabecular HU of L1-L3), L3-level tissue areas, and what the scan covers. Backends: "labels" (a label
map that comes with the CT: fine, merged or TotalSegmentator), "threshold" (HU thresholds; it identifies
no muscle, so it reports soft tissue at -29..150 HU and no muscle mass or MMP), "totalsegmentator" (when
its weights are installed), "auto". Before anything is measured, an image must look like CT in HU and
have voxel spacings of 0.1-20 mm (:mod:`vctcore.measure.checks`). Cohorts: :func:`measure_cohort`;
uploaded files (NIfTI or DICOM): :func:`measure_upload`.

Accuracy on phantoms (default 6 x 6 x 8 mm grid, see tests/test_measure*.py): with the phantom's own
labels, mass, BFP and MMP equal the builder's calibrated values (so within 3 % / 1.5 points of the
request). The threshold backend's BFP is close; its soft tissue (-29..150 HU) holds organs, bowel wall,
vessels and skin as well as muscle (3.9 times the skeletal muscle of TotalSegmentator's tissue-types
reference on a real abdominal CT, tests/test_measure_tissues.py), so it measures no MMP.
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

# Exported lazily: vctcore.measure.composition is imported by the phantom builder, which should not
# pay for (or cycle through) the whole measurement stack.
_EXPORTS = {
    "measure": "api", "BACKENDS": "backends", "BackendError": "backends", "Segmentation": "backends",
    "segment": "backends", "measure_cohort": "cohort", "Coverage": "coverage", "MeasureError": "record",
    "Measurements": "record", "measure_upload": "uploads",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from vctcore.measure.api import measure  # noqa: F401
    from vctcore.measure.backends import BACKENDS, BackendError, Segmentation, segment  # noqa: F401
    from vctcore.measure.cohort import measure_cohort  # noqa: F401
    from vctcore.measure.coverage import Coverage  # noqa: F401
    from vctcore.measure.record import MeasureError, Measurements  # noqa: F401
    from vctcore.measure.uploads import measure_upload  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"vctcore.measure.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'vctcore.measure' has no attribute {name!r}")


class _CallablePackage(types.ModuleType):
    """This package called as a function is :func:`vctcore.measure.api.measure`: ``vctcore.measure`` is both
    the measurement package and the top-level API's ``measure(ct, seg=None, backend="auto", force=False)``,
    so ``from vctcore import measure`` gives a callable whichever of the two was imported first."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.measure(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
