"""Body height from a fine label map, pose-independent (paper Appendix B.0.2).

Inputs are an (X, Y, Z) integer array of ``vctcore.labels.FINE_LABELS`` ids and its 4x4 affine
(voxel index -> RAS+ world, mm); any axis order or flip works, everything is done in world mm.
Height is the sum of four segments (cm):

* orientation: superior axis = first principal axis of the body voxels (labels > 0), signed so the
  head (skull, brain, cervical vertebrae) is superior; right axis = mean right-minus-left centroid
  difference of symmetric bones (hip, clavicula, scapula; femur, humerus as fallback), made
  orthogonal by Gram-Schmidt; anterior = superior x right.
* lower segment: "pelvis plane" normal to the superior axis through the superior-most femur voxel;
  per leg a "knee plane" through the superior-most tibia voxel; femur length along the femur's
  principal axis between the two planes; tibia length along the tibia's principal axis from the
  knee plane to its distal end (the ankle); foot height from the ankle to the sole, measured along
  the foot's "up" direction (the tibia axis made orthogonal to the long axis of the foot bones), so
  pointed feet of supine bodies do not lengthen the leg. The longer leg is the lower segment.
* torso: pelvis plane to the C7 centroid along the superior axis.
* neck: distance between the C7 and C1 centroids.
* head: from the C1 centroid along the C2 -> C1 line to the crown (where that ray leaves the body).

The raw sum is mapped to standing height by a linear calibration (``height_calibration``).
When a needed structure is missing or cut off by the field of view, no height is returned and
``reason`` says why.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from vctcore.labels import FINE_LABELS
from vctcore.measure.height_calibration import HeightCalibration, load_default_calibration

__all__ = ["HeightCalibration", "HeightResult", "measure_height"]

#: structures whose presence marks the head end of the body
_HEAD_NAMES = ("skull", "brain", *(f"vertebrae_C{i}" for i in range(1, 8)))
_FOOT_END_NAMES = ("foot_bones_left", "foot_bones_right", "tibia_left", "tibia_right")
#: symmetric bones for the left-right axis (first group preferred, second only if the first is absent)
_PAIRS = (("hip", "clavicula", "scapula"), ("femur", "humerus"))
_SIDES = ("left", "right")
#: at most this many body voxels enter the PCA of the body (regular subsample beyond)
_MAX_PCA_POINTS = 400_000
#: a ray has left the body after this much (mm) of consecutive background
_EXIT_GAP_MM = 30.0
#: longest ray (mm) searched for the crown or the sole
_MAX_RAY_MM = 600.0
#: a long bone tilted more than this from the superior axis is not measured (its cosine)
_MIN_COS = 0.5


@dataclass(frozen=True)
class HeightResult:
    """Height measurement (cm).

    ``height_cm``: calibrated height (or raw when no calibration is used); None when not measurable.
    ``raw_height_cm``: head + neck + torso + lower segment before calibration.
    ``reason``: why the height could not be measured (None when it was).
    ``segments_cm``: every segment that could be measured (head, neck, torso, lower, femur_left,
    tibia_left, foot_left, leg_left, ... right).
    ``calibrated``: whether ``height_cm`` went through a calibration.
    ``basis``: (3, 3) rows right, anterior, superior unit vectors in RAS+ (NaN if undetermined).
    """

    height_cm: float | None
    raw_height_cm: float | None
    reason: str | None
    segments_cm: dict[str, float] = field(default_factory=dict)
    calibrated: bool = False
    basis: np.ndarray = field(default_factory=lambda: np.full((3, 3), np.nan), compare=False, repr=False)

    def to_dict(self) -> dict:
        """JSON-ready dict (basis as nested lists)."""
        return {"height_cm": self.height_cm, "raw_height_cm": self.raw_height_cm, "reason": self.reason,
                "segments_cm": dict(self.segments_cm), "calibrated": self.calibrated,
                "basis": np.asarray(self.basis).tolist()}


class _NotMeasurable(Exception):
    """A needed structure is missing or cut off; the message is the user-facing reason."""


class _Geometry:
    """World points (mm) of the labelled voxels, grouped lazily by label, plus the body mask."""

    def __init__(self, labels: np.ndarray, affine: np.ndarray) -> None:
        self.shape = labels.shape
        self.m = affine[:3, :3]
        self.o = affine[:3, 3]
        self.m_inv = np.linalg.inv(self.m)
        self.body = labels > 0
        flat = np.flatnonzero(self.body)
        self.flat = flat
        self.values = labels.ravel()[flat]  # C order, like flatnonzero (copies only non-contiguous views)
        self._ijk: dict[int, np.ndarray] = {}

    def world(self, ijk: np.ndarray) -> np.ndarray:
        return ijk @ self.m.T + self.o

    def ijk(self, name: str) -> np.ndarray:
        """(N, 3) voxel indices of label ``name`` (N may be 0)."""
        v = FINE_LABELS[name]
        if v not in self._ijk:
            sel = self.flat[self.values == v]
            self._ijk[v] = np.stack(np.unravel_index(sel, self.shape), axis=1).astype(np.float64)
        return self._ijk[v]

    def points(self, *names: str) -> np.ndarray:
        """(N, 3) world points (mm) of the union of labels ``names``."""
        parts = [self.ijk(n) for n in names]
        return self.world(np.concatenate(parts, axis=0)) if parts else np.empty((0, 3))

    def has(self, name: str) -> bool:
        return len(self.ijk(name)) > 0

    def body_points(self) -> np.ndarray:
        step = max(1, int(np.ceil(self.flat.size / _MAX_PCA_POINTS)))
        sel = self.flat[::step]
        return self.world(np.stack(np.unravel_index(sel, self.shape), axis=1).astype(np.float64))

    def touches(self, name: str, axis: int) -> tuple[bool, bool]:
        """Whether label ``name`` touches the first / last slice along voxel ``axis``."""
        ijk = self.ijk(name)
        if not len(ijk):
            return False, False
        return bool(ijk[:, axis].min() <= 0), bool(ijk[:, axis].max() >= self.shape[axis] - 1)

    def ray_exit(self, origin: np.ndarray, direction: np.ndarray) -> float | None:
        """Distance (mm) from ``origin`` along unit ``direction`` to where the ray leaves the body.

        The exit is the far face of the last body sample before ``_EXIT_GAP_MM`` of background (beyond
        the image counts as background). None when the ray reaches the edge of the image while still in
        the body (cut off by the field of view) or stays in the body for ``_MAX_RAY_MM``.
        """
        step = 0.25 * float(np.min(np.linalg.norm(self.m, axis=0)))
        t = np.arange(0.0, _MAX_RAY_MM, step)
        idx = np.rint((origin[None, :] + t[:, None] * direction[None, :] - self.o) @ self.m_inv.T).astype(np.int64)
        in_img = np.all((idx >= 0) & (idx < np.asarray(self.shape)), axis=1)
        n_img = t.size if in_img.all() else int(np.argmin(in_img))
        inside = self.body[idx[:n_img, 0], idx[:n_img, 1], idx[:n_img, 2]]
        gap = max(1, int(np.ceil(_EXIT_GAP_MM / step)))
        bg = ~inside
        if n_img < t.size:  # the ray leaves the image: beyond it counts as background
            bg = np.concatenate([bg, np.ones(gap, dtype=bool)])
        run = np.convolve(bg.astype(np.int64), np.ones(gap, dtype=np.int64), mode="valid")
        full = np.flatnonzero(run == gap)
        if full.size == 0 or full[0] >= n_img:
            return None  # still in the body at the edge of the image (or after _MAX_RAY_MM)
        body_before = np.flatnonzero(inside[:full[0]])
        return float(t[body_before[-1]] + step / 2.0) if body_before.size else 0.0


def _principal_axis(points: np.ndarray) -> np.ndarray:
    """Unit vector of the largest principal axis of (N, 3) points."""
    c = points - points.mean(axis=0)
    w, v = np.linalg.eigh(c.T @ c)
    return v[:, -1]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _orientation(g: _Geometry) -> np.ndarray:
    """Rows right, anterior, superior (RAS+ unit vectors) of the body; raises _NotMeasurable."""
    if g.flat.size < 10:
        raise _NotMeasurable("the label map is empty: no labelled body voxels")
    body = g.body_points()
    s = _principal_axis(body)
    centre = body.mean(axis=0)
    head = g.points(*_HEAD_NAMES)
    feet = g.points(*_FOOT_END_NAMES, "femur_left", "femur_right")
    if len(head):
        sign = np.sign((head.mean(axis=0) - centre) @ s)
    elif len(feet):
        sign = np.sign((centre - feet.mean(axis=0)) @ s)
    else:
        raise _NotMeasurable("the image does not cover the head or the legs: the superior direction is unknown")
    s = s * (sign if sign != 0 else 1.0)
    r = np.zeros(3)
    for group in _PAIRS:
        for stem in group:
            left, right = g.points(f"{stem}_left"), g.points(f"{stem}_right")
            if len(left) and len(right):
                r += right.mean(axis=0) - left.mean(axis=0)
        if np.linalg.norm(r) > 0:
            break
    r = r - (r @ s) * s
    if np.linalg.norm(r) < 1e-6:  # no symmetric pair: the widest axis across the body
        c = body - centre
        w, v = np.linalg.eigh(c.T @ c)
        r = v[:, 1] - (v[:, 1] @ s) * s
    r = _unit(r)
    a = np.cross(s, r)
    return np.stack([r, a, s])


def _long_axis(g: _Geometry, s: np.ndarray) -> int:
    """The scan's long axis: the voxel axis closest to the superior direction ``s``."""
    cols = g.m / np.linalg.norm(g.m, axis=0)
    return int(np.argmax(np.abs(cols.T @ s)))


def _cut(g: _Geometry, names: tuple[str, ...], k: int) -> bool:
    """Whether any of ``names`` touches the first or last slice along voxel axis ``k``."""
    return any(any(g.touches(n, k)) for n in names)


def _head_neck(g: _Geometry, s: np.ndarray, k: int, seg: dict[str, float]) -> None:
    """Head (C1 -> crown) and neck (C7 -> C1) segments in cm into ``seg``; raises _NotMeasurable."""
    if not (g.has("skull") or g.has("brain")):
        raise _NotMeasurable("the image does not cover the head: no skull/brain labels")
    if _cut(g, ("skull", "brain"), k):
        raise _NotMeasurable("the head is cut off at the top slice of the image")
    missing = [n for n in ("vertebrae_C1", "vertebrae_C2") if not g.has(n)]
    if missing:
        raise _NotMeasurable(f"the head cannot be oriented: no {'/'.join(missing)} label")
    c1, c2 = g.points("vertebrae_C1").mean(axis=0), g.points("vertebrae_C2").mean(axis=0)
    d = _unit(c1 - c2)
    if d @ s <= 0:
        raise _NotMeasurable("the head cannot be oriented: the C1 centroid is not superior to C2")
    crown = g.ray_exit(c1, d)
    if crown is None:
        raise _NotMeasurable("the head is cut off at the top of the image (the crown is outside the field of view)")
    seg["head"] = crown / 10.0
    if not g.has("vertebrae_C7"):
        raise _NotMeasurable("the neck cannot be measured: no vertebrae_C7 label")
    c7 = g.points("vertebrae_C7").mean(axis=0)
    seg["neck"] = float(np.linalg.norm(c1 - c7)) / 10.0


def _leg(g: _Geometry, side: str, s: np.ndarray, pelvis: float, k: int) -> dict[str, float]:
    """Femur, tibia and foot lengths (cm) of one leg; raises _NotMeasurable naming what is missing."""
    names = (f"femur_{side}", f"tibia_{side}", f"foot_bones_{side}")
    if _cut(g, names, k):
        raise _NotMeasurable("cut off at the bottom slice of the image")
    missing = [n.split("_")[0] for n in names if not g.has(n)]
    if missing:
        raise _NotMeasurable(f"no {'/'.join(missing)} labels")
    femur, tibia, foot = (g.points(n) for n in names)
    u = _principal_axis(femur)
    u = u if u @ s > 0 else -u
    t = _principal_axis(tibia)
    t = t if t @ s > 0 else -t
    if u @ s < _MIN_COS or t @ s < _MIN_COS:
        raise _NotMeasurable("bent too far (femur or tibia more than 60 degrees from the body axis)")
    knee = float((tibia @ s).max())
    if knee >= pelvis:
        raise _NotMeasurable("the tibia reaches above the pelvis plane")
    femur_len = (pelvis - knee) / float(u @ s)
    c_t = tibia.mean(axis=0)
    to_knee = (knee - c_t @ s) / float(t @ s)  # along t from the tibia centroid to the knee plane
    distal = float(((tibia - c_t) @ t).min())
    ankle = c_t + distal * t
    f = _principal_axis(foot)
    up = t - (t @ f) * f
    if np.linalg.norm(up) < 0.3:
        raise _NotMeasurable("the foot is in line with the tibia: its sole cannot be found")
    up = _unit(up)
    sole = g.ray_exit(ankle, -up)
    if sole is None:
        raise _NotMeasurable("cut off at the bottom of the image (the sole is outside the field of view)")
    out = {"femur": float(femur_len) / 10.0, "tibia": float(to_knee - distal) / 10.0, "foot": float(sole) / 10.0}
    out["leg"] = out["femur"] + out["tibia"] + out["foot"]
    return out


def _lower(g: _Geometry, s: np.ndarray, k: int, seg: dict[str, float]) -> float:
    """Pelvis plane height (mm along s) and the longer leg into ``seg``; raises _NotMeasurable."""
    femurs = [n for n in ("femur_left", "femur_right") if g.has(n)]
    if not femurs:
        raise _NotMeasurable("the image does not cover the legs: no femur labels")
    pelvis = float((g.points(*femurs) @ s).max())
    problems: dict[str, str] = {}
    for side in _SIDES:
        try:
            leg = _leg(g, side, s, pelvis, k)
        except _NotMeasurable as e:
            problems[side] = str(e)
            continue
        seg.update({f"{key}_{side}": v for key, v in leg.items()})
    legs = [seg[f"leg_{side}"] for side in _SIDES if f"leg_{side}" in seg]
    if not legs:
        texts = sorted(set(problems.values()))
        if len(texts) == 1:
            msg = texts[0]
            if msg.startswith("no "):
                raise _NotMeasurable(f"the image does not cover the legs: {msg}")
            raise _NotMeasurable(f"both legs: {msg}" if not msg.startswith("cut off")
                                 else f"the legs are {msg}")
        raise _NotMeasurable("the legs cannot be measured: " + "; ".join(f"{k_} leg {v}" for k_, v in problems.items()))
    seg["lower"] = float(max(legs))
    return pelvis


def measure_height(labels: np.ndarray, affine: np.ndarray, *,
                   calibration: HeightCalibration | Literal["default"] | None = "default") -> HeightResult:
    """Standing body height (cm) from fine labels (X, Y, Z ints) and affine (4x4 voxel -> RAS+ mm).

    ``calibration``: "default" (the shipped linear fit), a ``HeightCalibration``, or None for the raw
    segment sum. Returns a HeightResult; when the body is incomplete (head or feet outside the field
    of view, needed bones unlabelled) ``height_cm`` is None and ``reason`` says why.
    Raises ValueError for malformed input (not 3-D, not integer, bad affine).
    """
    labels = np.asarray(labels)
    affine = np.asarray(affine, dtype=np.float64)
    if labels.ndim != 3:
        raise ValueError(f"measure_height: labels must be a 3-D (X, Y, Z) array, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"measure_height: labels must be integer fine-label ids, got dtype {labels.dtype}")
    if affine.shape != (4, 4) or not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise ValueError("measure_height: affine must be a finite 4x4 matrix with a non-singular 3x3 part")
    if isinstance(calibration, str) and calibration == "default":
        calibration = load_default_calibration()
    elif calibration is not None and not isinstance(calibration, HeightCalibration):
        raise ValueError(f"measure_height: calibration must be 'default', a HeightCalibration or None, "
                         f"got {calibration!r}")
    g = _Geometry(labels, affine)
    seg: dict[str, float] = {}
    basis = np.full((3, 3), np.nan)
    reasons: list[str] = []
    try:
        basis = _orientation(g)
    except _NotMeasurable as e:
        return HeightResult(None, None, str(e), seg, False, basis)
    s = basis[2]
    k = _long_axis(g, s)
    try:
        _head_neck(g, s, k, seg)
    except _NotMeasurable as e:
        reasons.append(str(e))
    try:
        pelvis = _lower(g, s, k, seg)
        if g.has("vertebrae_C7"):
            seg["torso"] = (float(g.points("vertebrae_C7").mean(axis=0) @ s) - pelvis) / 10.0
    except _NotMeasurable as e:
        reasons.append(str(e))
    if reasons:
        return HeightResult(None, None, "; ".join(reasons), seg, False, basis)
    raw = seg["head"] + seg["neck"] + seg["torso"] + seg["lower"]
    height = calibration.apply(raw) if calibration is not None else raw
    return HeightResult(float(height), float(raw), None, seg, calibration is not None, basis)
