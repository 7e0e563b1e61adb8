"""Linear calibration of pose-based body height (paper Appendix B, Fig. B1a).

The segment sum of ``vctcore.measure.height`` ("raw" height, cm) differs systematically from the
standing height (the head is measured along the C1 -> crown line, the femur along its own axis,
the foot perpendicular to its long axis). As in the paper, a linear fit
``height_cm = slope * raw_height_cm + intercept`` corrects for it.

The shipped fit (``height_calibration.json`` next to this module) is made on phantoms by
:func:`vctcore.phantom.calibrate_height.fit_height_calibration`; its JSON stores the raw/true pairs,
attribute rows, phantom seeds and poses for provenance. Regenerate with
``python -m vctcore.phantom.calibrate_height --n 40 --seed 4242``.
"""
from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vctcore.assets import package_file

#: the shipped default fit
DEFAULT_CALIBRATION_PATH = package_file("measure/height_calibration.json")
FORMAT = "vctcore.height_calibration/1"


@dataclass(frozen=True)
class HeightCalibration:
    """``height_cm = slope * raw_height_cm + intercept``; ``rmse_cm`` is the fit's residual RMS (cm).

    ``summary``: ranges of the fitted raw and true heights (cm), residuals by pose mode.
    ``provenance``: how the fit was made (maker, population, seeds, poses and the raw/true pairs).
    """

    slope: float
    intercept: float
    n: int
    rmse_cm: float
    summary: dict[str, Any] = field(default_factory=dict, compare=False)
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)

    def apply(self, raw_height_cm: float) -> float:
        """Calibrated height (cm) from a raw segment-sum height (cm)."""
        return float(self.slope * raw_height_cm + self.intercept)

    @classmethod
    def fit(cls, raw_cm: Sequence[float], true_cm: Sequence[float], *, poses: Sequence[str] | None = None,
            provenance: dict[str, Any] | None = None) -> HeightCalibration:
        """Least-squares line ``true ~ raw`` (cm); ``poses`` (one mode per pair) only feeds the summary."""
        raw, true = np.asarray(raw_cm, dtype=np.float64), np.asarray(true_cm, dtype=np.float64)
        if raw.shape != true.shape or raw.ndim != 1 or raw.size < 3:
            raise ValueError(f"need at least 3 matching raw/true heights, got {raw.shape} and {true.shape}")
        if not (np.isfinite(raw).all() and np.isfinite(true).all()):
            raise ValueError("raw and true heights must be finite")
        if np.ptp(raw) <= 0:
            raise ValueError("raw heights are all equal: the slope cannot be fitted")
        slope, intercept = np.polyfit(raw, true, 1)
        resid = true - (slope * raw + intercept)
        summary: dict[str, Any] = {
            "raw_cm": _stats(raw), "true_cm": _stats(true),
            "max_abs_residual_cm": float(np.abs(resid).max()),
            "raw_minus_true_cm": _stats(raw - true),
        }
        if poses is not None:
            modes = np.asarray(list(poses))
            if modes.shape != raw.shape:
                raise ValueError("poses must give one pose mode per raw/true pair")
            summary["residual_by_pose_cm"] = {
                str(m): {"n": int((modes == m).sum()), "rmse": float(np.sqrt(np.mean(resid[modes == m] ** 2))),
                         "max_abs": float(np.abs(resid[modes == m]).max())}
                for m in sorted(set(modes.tolist()))}
        return cls(slope=float(slope), intercept=float(intercept), n=int(raw.size),
                   rmse_cm=float(np.sqrt(np.mean(resid**2))), summary=summary, provenance=dict(provenance or {}))

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "model": "height_cm = slope * raw_height_cm + intercept",
                "slope": self.slope, "intercept": self.intercept, "n": self.n, "rmse_cm": self.rmse_cm,
                "summary": self.summary, "provenance": self.provenance}

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON text of the calibration; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=1, sort_keys=False) + "\n"
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_json(cls, source: str | Path) -> HeightCalibration:
        """Calibration from a JSON file path or JSON text; ValueError if it is not a valid calibration."""
        text = source.read_text(encoding="utf-8") if isinstance(source, Path) else str(source)
        if not text.lstrip().startswith("{"):
            text = Path(text).read_text(encoding="utf-8")
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"height calibration is not valid JSON: {e}") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"not a height calibration (expected format {FORMAT!r})")
        try:
            out = cls(slope=float(d["slope"]), intercept=float(d["intercept"]), n=int(d["n"]),
                      rmse_cm=float(d["rmse_cm"]), summary=dict(d.get("summary", {})),
                      provenance=dict(d.get("provenance", {})))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"height calibration is missing or has a bad field: {e}") from None
        if not all(math.isfinite(v) for v in (out.slope, out.intercept, out.rmse_cm)) or out.slope <= 0:
            raise ValueError(f"height calibration has a non-finite or non-positive slope/intercept: {out.slope}, "
                             f"{out.intercept}")
        return out


def _stats(x: np.ndarray) -> dict[str, float]:
    return {"min": float(x.min()), "max": float(x.max()), "mean": float(x.mean()), "sd": float(x.std())}


@functools.lru_cache(maxsize=1)
def load_default_calibration() -> HeightCalibration:
    """The shipped fit (``height_calibration.json``); FileNotFoundError says how to regenerate it."""
    if not DEFAULT_CALIBRATION_PATH.is_file():
        raise FileNotFoundError(
            f"default height calibration {DEFAULT_CALIBRATION_PATH} is missing; regenerate it with "
            "`python -m vctcore.phantom.calibrate_height`")
    return HeightCalibration.from_json(DEFAULT_CALIBRATION_PATH)
