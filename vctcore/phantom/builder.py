"""Build one digital-human phantom: plan -> anti-aliased painting -> CT blur and noise -> calibration.

The calibration loop re-measures the finished image exactly as Appendix B measurement would
(density from HU, summed over labels) and rescales the fat and muscle budgets and the skin/fascia
volume until body mass, BFP and MMP match the request (typically 2-3 passes).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy import ndimage

from vctcore.labels import FINE_LABEL_NAMES, FINE_LABELS, MERGED_CLASSES, fine_to_merged
from vctcore.measure.composition import AIR_CUTOFF_HU, Composition, composition_from_labels
from vctcore.phantom import body as B
from vctcore.phantom import tissues as T
from vctcore.phantom.plan import Plan, build_plan
from vctcore.phantom.pose import ARM_MODES, Pose, sample_pose
from vctcore.phantom.shapes import Canvas
from vctcore.provenance import package_versions
from vctcore.volume import CTVolume, LabelMap, make_affine

REQUIRED = ("sex", "age_years", "height_cm", "weight_kg", "bfp_pct", "mmp_pct", "bone_density_hu")
#: phantom support (narrower than the physiological ranges of vctcore.attributes)
SUPPORT = {"age_years": (18.0, 95.0), "height_cm": (140.0, 205.0), "weight_kg": (35.0, 180.0),
           "bfp_pct": (4.0, 60.0), "mmp_pct": (15.0, 60.0), "bone_density_hu": (20.0, 400.0), "bmi": (14.0, 55.0)}
CT_NOISE_HU = 12.0
PSF_SIGMA_VOX = (0.5, 0.5, 0.35)


@dataclass(frozen=True)
class PhantomGrid:
    """Image grid: ``shape`` (X, Y, Z) voxels and ``spacing_mm``; the body is centred in x and y, crown near the top."""

    shape: tuple[int, int, int] = (128, 96, 272)
    spacing_mm: tuple[float, float, float] = (6.0, 6.0, 8.0)
    crown_margin_mm: float = 24.0

    @property
    def extent_mm(self) -> tuple[float, float, float]:
        return tuple(n * s for n, s in zip(self.shape, self.spacing_mm))  # type: ignore[return-value]


#: default grid: 768 x 576 x 2176 mm at 6 x 6 x 8 mm (the coarsest the product allows), so a 205 cm
#: adult with pointed feet fits head to toe, and the arms of a 110 kg adult fit beside or over the trunk;
#: 3.3 M voxels, every axis a multiple of 16 for the generator's 16x latent compression.
DEFAULT_GRID = PhantomGrid()


@dataclass
class Phantom:
    """One synthetic patient: CT (HU), fine labels, 16 merged classes, requested attributes, self-check."""

    ct: CTVolume
    labels: LabelMap
    seg: LabelMap
    attributes: dict[str, Any]
    pose: Pose
    seed: int
    report: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


def check_attributes(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Validated copy of ``attrs``; raises ValueError naming the attribute, value and supported range."""
    missing = [k for k in REQUIRED if k not in attrs or attrs[k] is None]
    if missing:
        raise ValueError(f"phantom needs attribute(s) {', '.join(missing)}")
    out = {k: attrs[k] for k in REQUIRED}
    if out["sex"] not in ("F", "M"):
        raise ValueError(f"sex must be 'F' or 'M', got {out['sex']!r}")
    for k in REQUIRED[1:]:
        try:
            out[k] = float(out[k])
        except (TypeError, ValueError):
            raise ValueError(f"{k} must be a number, got {attrs[k]!r}") from None
    out["bmi"] = out["weight_kg"] / (out["height_cm"] / 100.0) ** 2
    for k, (lo, hi) in SUPPORT.items():
        if not lo <= out[k] <= hi or not np.isfinite(out[k]):
            raise ValueError(f"{k}={out[k]:.4g} is outside the phantom's supported range [{lo:g}, {hi:g}]")
    lean_other = 100.0 - out["bfp_pct"] - out["mmp_pct"]
    if lean_other < 18.0:
        raise ValueError(
            f"bfp_pct + mmp_pct = {out['bfp_pct'] + out['mmp_pct']:.1f}% leaves {lean_other:.1f}% of body mass for "
            "bones, organs and skin; a body needs at least 18%")
    del out["bmi"]
    return out


def supported_rows(table: pd.DataFrame, n: int | None = None) -> pd.DataFrame:
    """The rows of an attribute table inside the phantom's support (``check_attributes`` passes), in
    order, at most ``n``; the original index is kept."""
    keep = []
    for idx, row in table.iterrows():
        try:
            check_attributes({k: row[k] for k in REQUIRED})
        except ValueError:
            continue
        keep.append(idx)
        if n is not None and len(keep) == n:
            break
    return table.loc[keep]


def _grid_origin(grid: PhantomGrid, h_mm: float, y_range: tuple[float, float]) -> np.ndarray:
    nx, ny, nz = grid.shape
    sx, sy, sz = grid.spacing_mm
    x0 = -(nx - 1) * sx / 2.0
    y0 = (y_range[0] + y_range[1]) / 2.0 - (ny - 1) * sy / 2.0
    z0 = h_mm + grid.crown_margin_mm - (nz - 1) * sz
    return np.array([x0, y0, z0])


def _fits(plan: Plan, grid: PhantomGrid) -> bool:
    margin = 2 * max(grid.spacing_mm)
    width = plan.extent_x_mm[1] - plan.extent_x_mm[0]
    depth = plan.extent_y_mm[1] - plan.extent_y_mm[0]
    return width < grid.extent_mm[0] - margin and depth < grid.extent_mm[1] - margin


def _fitting_plan(a: Mapping[str, Any], pose: Pose, scales: B.Scales, detail_seed: np.random.Generator,
                  grid: PhantomGrid) -> tuple[Plan, Pose]:
    """Plan with the pose's arm placement, or the other placement if only that one fits the grid."""
    plans = []
    for arms in (pose.arms, *(m for m in ARM_MODES if m != pose.arms)):
        p = replace(pose, arms=arms)
        plan = build_plan(a, p, scales, np.random.default_rng(detail_seed.bit_generator.seed_seq))
        if _fits(plan, grid):
            return plan, p
        plans.append((plan, p))
    return plans[0]


def _render(plan: Plan, grid: PhantomGrid, origin: np.ndarray) -> Canvas:
    canvas = Canvas(grid.shape, grid.spacing_mm, tuple(origin))
    canvas.paint_all(plan.strokes)
    return canvas


def _finish(hu: np.ndarray, labels: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Scanner point-spread blur plus correlated noise; HU clipped to the 12-bit CT range.

    Voxels the blur lifts above the air cut-off (-900 HU) at the skin join the body as skin
    (``soft_tissue``), so a label-based and a threshold-based body mask agree. Modifies ``labels``.
    """
    out = ndimage.gaussian_filter(hu, PSF_SIGMA_VOX, mode="nearest")
    labels[(labels == 0) & (out > AIR_CUTOFF_HU)] = FINE_LABELS["soft_tissue"]
    out += noise
    return np.clip(out, -1024.0, 3071.0, out=out)


def _noise(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(shape, dtype=np.float32)
    smooth = ndimage.gaussian_filter(white, 0.6, mode="wrap")
    return smooth * np.float32(CT_NOISE_HU / max(float(smooth.std()), 1e-6))


def _converged(comp: Composition, a: Mapping[str, float], tol: tuple[float, float] = (0.006, 0.35)) -> bool:
    """Mass within ``tol[0]`` (relative) and BFP, MMP within ``tol[1]`` percentage points of the request."""
    return (abs(comp.mass_kg - a["weight_kg"]) / a["weight_kg"] < tol[0]
            and abs(comp.bfp_pct - a["bfp_pct"]) < tol[1] and abs(comp.mmp_pct - a["mmp_pct"]) < tol[1])


#: skin/fascia/connective tissue volume kept between these fractions of body weight (mL per g)
SKIN_RANGE = (0.035, 0.085)


def _update(scales: B.Scales, comp: Composition, a: Mapping[str, float]) -> B.Scales:
    """Next calibration knobs from the measured composition (multiplicative for fat and muscle).

    The rest of the mass ("other": bones, organs, skin) is matched by the skin/fascia volume; if that
    would leave skin outside ``SKIN_RANGE``, the frame (bone and organ cross-sections) is rescaled.
    """
    w = a["weight_kg"]
    fat_t, mus_t = w * a["bfp_pct"] / 100.0, w * a["mmp_pct"] / 100.0
    other_t = w - fat_t - mus_t
    other = comp.mass_kg - comp.fat_kg - comp.muscle_kg
    rho_skin = T.density_g_ml(T.SOFT_TISSUE_HU)
    skin_kg = (scales.skin_ml or 0.0) * rho_skin / 1000.0
    fixed = max(other - skin_kg, 1e-3)
    skin_t = other_t - fixed
    frame = scales.frame
    lo, hi = (f * w for f in SKIN_RANGE)
    if not lo <= skin_t <= hi:
        skin_t = float(np.clip(skin_t, lo, hi))
        frame = float(np.clip(frame * (max(other_t - skin_t, 1e-3) / fixed) ** 0.4, 0.6, 1.35))
    return B.Scales(fat=scales.fat * fat_t / max(comp.fat_kg, 1e-3),
                    muscle=scales.muscle * mus_t / max(comp.muscle_kg, 1e-3),
                    skin_ml=skin_t * 1000.0 / rho_skin, frame=frame)


def build_phantom(attrs: Mapping[str, Any], *, seed: int = 0, pose: str | Pose = "supine",
                  grid: PhantomGrid = DEFAULT_GRID, max_passes: int = 8) -> Phantom:
    """Build a phantom CT + labels from attributes (see ``REQUIRED``; height cm, weight kg, %, HU).

    ``pose``: "supine" (random bent knees, pointed feet, arms at the sides or folded), "standing"
    (straight legs, neutral feet: head-to-heel extent equals height) or an explicit ``Pose``.
    Deterministic for a given ``seed``. Raises ValueError for unsupported or inconsistent attributes.
    """
    t0 = time.perf_counter()
    a = check_attributes(attrs)
    pose_rng, detail_seed, noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    the_pose = pose if isinstance(pose, Pose) else sample_pose(pose, pose_rng)
    h = a["height_cm"] * 10.0
    noise = _noise(grid.shape, noise_rng)
    scales = B.Scales(skin_ml=0.05 * a["weight_kg"] * 1000.0, frame=0.93 if a["sex"] == "F" else 1.0)
    vox_ml = float(np.prod(grid.spacing_mm)) / 1000.0
    history = []
    for _ in range(max_passes):
        plan, the_pose = _fitting_plan(a, the_pose, scales, detail_seed, grid)
        origin = _grid_origin(grid, h, plan.extent_y_mm)
        canvas = _render(plan, grid, origin)
        hu = _finish(canvas.hu, canvas.label, noise)
        comp = composition_from_labels(hu, canvas.label, vox_ml)
        history.append(comp)
        if _converged(comp, a):
            break
        scales = _update(scales, comp, a)
    if not _converged(comp, a, tol=(0.015, 0.75)):
        raise ValueError(
            f"could not build a body matching weight_kg={a['weight_kg']:g}, bfp_pct={a['bfp_pct']:g}, "
            f"mmp_pct={a['mmp_pct']:g} at height_cm={a['height_cm']:g} (reached {comp.mass_kg:.1f} kg, "
            f"BFP {comp.bfp_pct:.1f}%, MMP {comp.mmp_pct:.1f}%): the combination is outside the phantom's anatomy")
    _check_fits(canvas.label, plan, grid, origin)
    affine = make_affine(grid.spacing_mm, tuple(origin))
    labels = canvas.label
    report = {
        "weight_kg": comp.mass_kg, "bfp_pct": comp.bfp_pct, "mmp_pct": comp.mmp_pct,
        "body_volume_l": comp.body_volume_l, "extent_cm": _extent_cm(labels, grid),
        "calibration_passes": len(history), "seconds": time.perf_counter() - t0,
    }
    provenance = {"maker": "vctcore.phantom", "versions": package_versions(), "seed": int(seed),
                  "pose": the_pose.as_dict(), "grid": {"shape": list(grid.shape), "spacing_mm": list(grid.spacing_mm)},
                  "noise_hu": CT_NOISE_HU, "psf_sigma_vox": list(PSF_SIGMA_VOX)}
    return Phantom(
        ct=CTVolume(data=hu, affine=affine),
        labels=LabelMap(data=labels, affine=affine, names=dict(FINE_LABEL_NAMES)),
        seg=LabelMap(data=fine_to_merged(labels), affine=affine, names=dict(MERGED_CLASSES)),
        attributes={k: attrs[k] for k in REQUIRED}, pose=the_pose, seed=int(seed), report=report,
        provenance=provenance)


def _extent_cm(labels: np.ndarray, grid: PhantomGrid) -> float:
    """Superior-inferior extent (cm) of the labelled body: slices holding any label."""
    zs = np.flatnonzero(labels.any(axis=(0, 1)))
    return float((zs[-1] - zs[0] + 1) * grid.spacing_mm[2] / 10.0) if zs.size else 0.0


def _check_fits(labels: np.ndarray, plan: Plan, grid: PhantomGrid, origin: np.ndarray) -> None:
    """The body must not touch the grid border (it would be cut off)."""
    for axis, name in ((0, "left-right"), (1, "anterior-posterior"), (2, "head-foot")):
        other = tuple(i for i in range(3) if i != axis)
        occupied = labels.any(axis=other)
        if occupied[0] or occupied[-1]:
            raise ValueError(
                f"the body does not fit the {grid.extent_mm[axis]:.0f} mm {name} field of view of the grid "
                f"{grid.shape} at {grid.spacing_mm} mm; use a larger grid")
