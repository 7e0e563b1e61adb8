"""Implicit shapes and an anti-aliased painter for the procedural phantom.

Every shape gives an approximate signed distance ``d`` in mm (negative inside) on a grid block,
plus a world-space bounding box. The painter turns distance into partial-volume coverage
``c = clip(0.5 - d / h, 0, 1)`` (h = voxel size, mm) and composites HU as ``hu = hu (1 - c) + v c``
(painter's algorithm: later shapes sit on top); a voxel takes the shape's label where ``c >= 0.5``.
This gives partial-volume edges for free, so tissue masses vary smoothly with shape parameters.

Coordinates are world mm in RAS+ (x -> patient right, y -> anterior, z -> superior); arrays are
indexed (X, Y, Z). We write these few primitives ourselves because no field library offers
anti-aliased analytic rasterisation of tapered sweeps with per-voxel coverage.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Vec = np.ndarray
_EPS = 1e-6


def _unit(v: Vec) -> Vec:
    v = np.asarray(v, dtype=np.float64)
    return v / max(float(np.linalg.norm(v)), _EPS)


@dataclass
class Shape:
    """Base class: ``sdf(x, y, z)`` on broadcastable coordinate arrays (mm), ``bbox()`` in mm."""

    def sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def bbox(self) -> tuple[Vec, Vec]:  # pragma: no cover
        raise NotImplementedError

    def __and__(self, other: Shape) -> Shape:
        return Intersect(self, other)

    def __sub__(self, other: Shape) -> Shape:
        return Subtract(self, other)


@dataclass
class Ellipsoid(Shape):
    """Ellipsoid with ``radii`` (mm) along the columns of rotation ``rot`` (3x3), centred at ``center``."""

    center: Vec
    radii: Vec
    rot: Vec = field(default_factory=lambda: np.eye(3))

    def sdf(self, x, y, z):
        c = [float(v) for v in self.center]
        r = [float(v) for v in self.radii]
        m = np.asarray(self.rot, float)
        dx, dy, dz = x - c[0], y - c[1], z - c[2]
        if np.allclose(m, np.eye(3)):
            q = [dx, dy, dz]
        else:
            q = [float(m[0, i]) * dx + float(m[1, i]) * dy + float(m[2, i]) * dz for i in range(3)]
        rr = np.sqrt((q[0] / r[0]) ** 2 + (q[1] / r[1]) ** 2 + (q[2] / r[2]) ** 2)
        grad = np.sqrt((q[0] / r[0] ** 2) ** 2 + (q[1] / r[1] ** 2) ** 2 + (q[2] / r[2] ** 2) ** 2)
        grad = grad / np.maximum(rr, _EPS)
        return (rr - 1.0) / np.maximum(grad, 1.0 / max(r))

    def bbox(self):
        ext = np.abs(np.asarray(self.rot)) @ np.asarray(self.radii, float)
        return np.asarray(self.center) - ext, np.asarray(self.center) + ext


@dataclass
class Sweep(Shape):
    """A tapered elliptic tube from ``p0`` to ``p1``.

    Cross-section radii ``a`` (along ``u``) and ``b`` (along ``w = axis x u``) and centre offsets
    ``du``/``dw`` are given at fractional positions ``knots`` (0 at p0, 1 at p1) and interpolated
    linearly. ``caps``: "flat" cuts the tube at both ends, "round" closes it with half-ellipsoids.
    """

    p0: Vec
    p1: Vec
    knots: Vec
    a: Vec
    b: Vec
    u: Vec = field(default_factory=lambda: np.array([1.0, 0.0, 0.0]))
    du: Vec | None = None
    dw: Vec | None = None
    caps: str = "flat"

    def _frame(self) -> tuple[Vec, float, Vec, Vec]:
        axis = np.asarray(self.p1, float) - np.asarray(self.p0, float)
        length = max(float(np.linalg.norm(axis)), _EPS)
        e = axis / length
        u = _unit(np.asarray(self.u, float) - np.dot(self.u, e) * e)
        return e, length, u, np.cross(e, u)

    def sdf(self, x, y, z):
        e, length, u, w = (v if np.ndim(v) == 0 else [float(c) for c in v] for v in self._frame())
        p0 = [float(v) for v in self.p0]
        dx, dy, dz = x - p0[0], y - p0[1], z - p0[2]
        t = (e[0] * dx + e[1] * dy + e[2] * dz) / float(length)
        tc = np.clip(t, 0.0, 1.0)
        k = np.asarray(self.knots, float)
        interp = lambda v: np.interp(tc, k, np.asarray(v, float)).astype(np.float32)  # noqa: E731
        a, b = interp(self.a), interp(self.b)
        lu = u[0] * dx + u[1] * dy + u[2] * dz
        lw = w[0] * dx + w[1] * dy + w[2] * dz
        if self.du is not None:
            lu = lu - interp(self.du)
        if self.dw is not None:
            lw = lw - interp(self.dw)
        excess = (t - tc) * float(length)
        if self.caps == "round":
            rc = np.minimum(a, b)
            rr = np.sqrt((lu / a) ** 2 + (lw / b) ** 2 + (excess / rc) ** 2)
            grad = np.sqrt((lu / a**2) ** 2 + (lw / b**2) ** 2 + (excess / rc**2) ** 2)
            return (rr - 1.0) / np.maximum(grad / np.maximum(rr, _EPS), 1.0 / np.maximum(a, b))
        rr = np.sqrt((lu / a) ** 2 + (lw / b) ** 2)
        grad = np.sqrt((lu / a**2) ** 2 + (lw / b**2) ** 2) / np.maximum(rr, _EPS)
        d_cross = (rr - 1.0) / np.maximum(grad, 1.0 / np.maximum(a, b))
        d_end = np.maximum(-t, t - 1.0) * float(length)
        return np.maximum(d_cross, d_end)

    def bbox(self):
        e, _, u, w = self._frame()
        a_max = float(np.max(self.a)) + (float(np.max(np.abs(self.du))) if self.du is not None else 0.0)
        b_lo = float(np.min(np.asarray(self.dw) - self.b)) if self.dw is not None else -float(np.max(self.b))
        b_hi = float(np.max(np.asarray(self.dw) + self.b)) if self.dw is not None else float(np.max(self.b))
        # the cross-section spans [-a_max, a_max] along u and [b_lo, b_hi] along w
        corners = [su * a_max * u + sw * w for su in (-1, 1) for sw in (b_lo, b_hi)]
        pts = [np.asarray(p, float) + c for p in (self.p0, self.p1) for c in corners]
        if self.caps == "round":
            r = float(max(np.max(self.a), np.max(self.b)))
            pts += [p + s * e * r for p in pts for s in (-1, 1)]
        pts = np.array(pts)
        return pts.min(0), pts.max(0)


@dataclass
class Box(Shape):
    """Axis-aligned box between corners ``lo`` and ``hi`` (mm)."""

    lo: Vec
    hi: Vec

    def sdf(self, x, y, z):
        d = [np.maximum(float(self.lo[i]) - c, c - float(self.hi[i])) for i, c in enumerate((x, y, z))]
        return np.maximum(np.maximum(d[0], d[1]), d[2])

    def bbox(self):
        return np.asarray(self.lo, float), np.asarray(self.hi, float)


@dataclass
class HalfSpace(Shape):
    """Points with ``dot(normal, p) < offset`` (normal need not be unit). Unbounded."""

    normal: Vec
    offset: float

    def sdf(self, x, y, z):
        n = np.asarray(self.normal, float)
        n = n / float(np.linalg.norm(n))
        off = float(self.offset) / float(np.linalg.norm(self.normal))
        return float(n[0]) * x + float(n[1]) * y + float(n[2]) * z - off

    def bbox(self):
        lo, hi = np.full(3, -np.inf), np.full(3, np.inf)
        n = np.asarray(self.normal, float)
        axes = np.flatnonzero(np.abs(n) > 0)
        if axes.size == 1:
            i = int(axes[0])
            bound = self.offset / n[i]
            if n[i] > 0:
                hi[i] = bound
            else:
                lo[i] = bound
        return lo, hi


@dataclass
class Intersect(Shape):
    first: Shape
    second: Shape

    def sdf(self, x, y, z):
        return np.maximum(self.first.sdf(x, y, z), self.second.sdf(x, y, z))

    def bbox(self):
        (l1, h1), (l2, h2) = self.first.bbox(), self.second.bbox()
        return np.maximum(l1, l2), np.minimum(h1, h2)


@dataclass
class Subtract(Shape):
    first: Shape
    second: Shape

    def sdf(self, x, y, z):
        return np.maximum(self.first.sdf(x, y, z), -self.second.sdf(x, y, z))

    def bbox(self):
        return self.first.bbox()


@dataclass
class Stroke:
    """One painting instruction: ``shape`` filled with ``hu`` (HU) and fine label value ``label``.

    ``label=None`` keeps the labels already painted (used for internal HU structure such as
    trabecular bone inside a cortical shell); ``hu=None`` changes labels only.
    """

    shape: Shape
    hu: float | None
    label: int | None
    only: int | None = None  # restrict to voxels currently carrying this label (e.g. lobes of a lung)


class Canvas:
    """HU and label volumes on a regular RAS+ grid that strokes are painted onto."""

    def __init__(self, shape: tuple[int, int, int], spacing_mm: tuple[float, float, float],
                 origin_mm: tuple[float, float, float], background_hu: float = -1000.0) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.spacing = np.asarray(spacing_mm, float)
        self.origin = np.asarray(origin_mm, float)
        self.hu = np.full(self.shape, background_hu, dtype=np.float32)
        self.label = np.zeros(self.shape, dtype=np.uint8)
        self.voxel_h = float(np.prod(self.spacing) ** (1.0 / 3.0))
        self._axes = [(self.origin[i] + self.spacing[i] * np.arange(self.shape[i])).astype(np.float32)
                      for i in range(3)]

    def block(self, shape: Shape) -> tuple[slice, ...] | None:
        """Index block (with a one-voxel margin) covering the shape's bounding box, or None if empty."""
        lo, hi = shape.bbox()
        sl = []
        for i in range(3):
            lo_i = -np.inf if not np.isfinite(lo[i]) else lo[i]
            hi_i = np.inf if not np.isfinite(hi[i]) else hi[i]
            a = int(np.floor((lo_i - self.origin[i]) / self.spacing[i])) - 1 if np.isfinite(lo_i) else 0
            b = int(np.ceil((hi_i - self.origin[i]) / self.spacing[i])) + 2 if np.isfinite(hi_i) else self.shape[i]
            a, b = max(a, 0), min(b, self.shape[i])
            if a >= b:
                return None
            sl.append(slice(a, b))
        return tuple(sl)

    def paint(self, stroke: Stroke) -> None:
        sl = self.block(stroke.shape)
        if sl is None:
            return
        x = self._axes[0][sl[0]][:, None, None]
        y = self._axes[1][sl[1]][None, :, None]
        z = self._axes[2][sl[2]][None, None, :]
        d = stroke.shape.sdf(x, y, z)
        cover = np.clip(0.5 - d / np.float32(self.voxel_h), 0.0, 1.0).astype(np.float32, copy=False)
        if stroke.only is not None:
            cover = np.where(self.label[sl] == stroke.only, cover, np.float32(0.0))
        if stroke.hu is not None:
            hu = self.hu[sl]
            hu += (np.float32(stroke.hu) - hu) * cover
        if stroke.label is not None:
            self.label[sl][cover >= 0.5] = stroke.label

    def paint_all(self, strokes: list[Stroke]) -> None:
        for s in strokes:
            self.paint(s)
