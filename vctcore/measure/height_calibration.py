"""Linear calibration of pose-based body height (paper Appendix B, Fig. B1a).

The segment sum of ``vctcore.measure.height`` ("raw" height, cm) differs systematically from the
standing height (the head is measured along the C1 -> crown line, the femur along its own axis,
the foot perpendicular to its long axis). As in the paper, a linear fit
``height_cm = slope * raw_height_cm + intercept`` corrects for it.

The shipped fit (``height_calibration.json`` next to this module) comes from
``fit_height_calibration(n, seed)``: phantoms of the adult reference population in varied poses
(supine with random bent knees, pointed feet and arm placement; every fourth one standing), whose
true height is the requested ``height_cm``. Its JSON stores the raw/true pairs, attribute rows,
phantom seeds and poses for provenance. Regenerate with
``python -m vctcore.measure.height_calibration --n 40 --seed 4242``.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vctcore.assets import default_population, package_file

#: the shipped default fit
DEFAULT_CALIBRATION_PATH = package_file("measure/height_calibration.json")
#: population the default fit draws its attribute rows from
DEFAULT_POPULATION = default_population()
FORMAT = "vctcore.height_calibration/1"
#: calibration row i gets phantom seed PHANTOM_SEED_BASE + 1000 * seed + i (far from the seeds tests use)
PHANTOM_SEED_BASE = 500_000


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
            "`python -m vctcore.measure.height_calibration`")
    return HeightCalibration.from_json(DEFAULT_CALIBRATION_PATH)


def pose_mode(i: int) -> str:
    """Pose mode of calibration phantom ``i``: every fourth standing, the rest supine (random pose)."""
    return "standing" if i % 4 == 3 else "supine"


def phantom_rows(n: int, seed: int, population: str | Path = DEFAULT_POPULATION):
    """The first ``n`` rows of ``population`` sampled with ``seed`` that lie in the phantom's support."""
    from vctcore.phantom.builder import REQUIRED, check_attributes
    from vctcore.population import PopulationSpec

    spec = PopulationSpec.from_yaml(population)
    m = 2 * n
    while True:
        rows = spec.sample(m, seed=seed)
        keep = []
        for i, (_, row) in enumerate(rows.iterrows()):
            try:
                check_attributes({k: row[k] for k in REQUIRED})
            except ValueError:
                continue
            keep.append(i)
        if len(keep) >= n:
            return rows.iloc[keep[:n]]
        m *= 2


def fit_height_calibration(n: int = 40, seed: int = 4242, *, population: str | Path = DEFAULT_POPULATION,
                           progress: bool = False) -> HeightCalibration:
    """Fit the height calibration on ``n`` phantoms (about 2 s each) in varied poses.

    Rows: ``population`` sampled with ``seed`` (rows the phantom cannot build are skipped and recorded);
    row i uses phantom seed ``PHANTOM_SEED_BASE + 1000 * seed + i``; the k-th built phantom has pose
    ``pose_mode(k)``. True height is the requested ``height_cm``; raw height is
    ``measure_height(..., calibration=None).raw_height_cm``. Every pair is kept in the provenance.
    """
    from vctcore.measure.height import measure_height
    from vctcore.phantom.builder import REQUIRED, build_phantom
    from vctcore.provenance import provenance as provenance_record

    rows = phantom_rows(3 * n, seed, population)
    raw, true, modes, data, skipped = [], [], [], [], []
    for i, (_, row) in enumerate(rows.iterrows()):
        if len(raw) == n:
            break
        attrs = {k: (row[k] if k == "sex" else float(row[k])) for k in REQUIRED}
        pseed = PHANTOM_SEED_BASE + 1000 * seed + i
        mode = pose_mode(len(raw))
        try:
            ph = build_phantom(attrs, seed=pseed, pose=mode)
        except ValueError as e:  # body composition the phantom cannot reach: skip the row, keep a record
            skipped.append({"row": str(row["id"]), "phantom_seed": pseed, "error": str(e)})
            continue
        res = measure_height(ph.labels.data, ph.labels.affine, calibration=None)
        if res.raw_height_cm is None:
            raise RuntimeError(f"calibration phantom {i} (seed {pseed}, {mode}) not measurable: {res.reason}")
        raw.append(res.raw_height_cm)
        true.append(float(row["height_cm"]))
        modes.append(mode)
        data.append({"row": str(row["id"]), "phantom_seed": pseed, "pose_mode": mode, "pose": ph.pose.as_dict(),
                     "sex": str(row["sex"]), "true_height_cm": float(row["height_cm"]),
                     "raw_height_cm": res.raw_height_cm})
        if progress:
            print(f"{len(raw)}/{n} {mode:8s} true {true[-1]:6.1f} raw {raw[-1]:6.1f}", flush=True)
    if len(raw) < n:
        raise RuntimeError(f"only {len(raw)} of {n} calibration phantoms could be built from {population}")
    try:
        pop = str(Path(population).resolve().relative_to(DEFAULT_POPULATION.parents[2]))
    except ValueError:
        pop = str(population)
    provenance = {
        "maker": "vctcore.measure.height_calibration.fit_height_calibration", **provenance_record(),
        "population": pop, "sample_seed": int(seed), "n": int(n),
        "phantom_seeds": [d["phantom_seed"] for d in data],
        "pose_modes": "supine (random hip flexion 0-14 deg, foot plantar flexion 15-45 deg, arms sides/folded); "
                      "every fourth phantom standing",
        "true_height": "requested height_cm of the phantom (crown to sole when standing)",
        "data": data,
        "skipped_rows": skipped,
    }
    return HeightCalibration.fit(raw, true, poses=modes, provenance=provenance)


def main(argv: Sequence[str] | None = None) -> None:
    """Refit the shipped default calibration (writes ``height_calibration.json``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="number of phantoms (about 2 s each)")
    ap.add_argument("--seed", type=int, default=4242, help="population sample seed")
    ap.add_argument("--out", type=Path, default=DEFAULT_CALIBRATION_PATH)
    args = ap.parse_args(argv)
    cal = fit_height_calibration(args.n, args.seed, progress=True)
    cal.to_json(args.out)
    print(f"slope {cal.slope:.5f} intercept {cal.intercept:.3f} cm rmse {cal.rmse_cm:.3f} cm (n={cal.n}) -> {args.out}")


if __name__ == "__main__":
    main()
