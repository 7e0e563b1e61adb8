"""3D organ surfaces of a patient: one triangle mesh per merged class, the body translucent, as Plotly.

``organ_figure(seg, spacing_mm, ct=ct)`` -> a ``go.Figure`` with one ``go.Mesh3d`` per class present
(colour of :data:`vctcore.render.MERGED_COLOURS`, the 2D overlay's; clicking a legend entry hides or
shows that organ) and the body surface (CT above -500 HU, the largest connected region with the holes of
each axial slice filled, so the lungs do not show an inner surface; or, without a CT, every labelled
voxel) drawn translucent. Coordinates are RAS+ world mm (voxel index x spacing + ``origin_mm``); the
scene's aspect ratio follows the data, so millimetres are equal along every axis.

Surfaces come from marching cubes (skimage) on each class's bounding-box crop, smoothed by a small
Gaussian so that the voxel staircase does not dominate at CT spacings of several mm. A mesh above
``max_faces`` triangles is remade on a coarser sampling step (2, then 3 voxels), which keeps the figure
JSON (and so what the browser receives) around 1-2 MB for a default-grid patient.

Label maps are ``(X, Y, Z)`` uint8 arrays on RAS+ voxel axes (:mod:`vctcore.render`); no UI imports.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from scipy import ndimage
from skimage.measure import marching_cubes

from vctcore.labels import MERGED_CLASSES
from vctcore.measure.morphology import BODY_HU, largest_body
from vctcore.render import MERGED_COLOURS

BODY_NAME = "body surface"
BODY_COLOUR = (205, 170, 150)
BODY_OPACITY = 0.15
#: Gaussian sigma (voxels) applied to each binary mask before marching cubes
SMOOTH_SIGMA_VOX = 0.6
#: a mesh with more triangles than this is remade at a coarser sampling step
MAX_FACES_ORGAN = 12_000
MAX_FACES_BODY = 16_000
MAX_STEP = 3
#: the initial camera: in front of the patient (anterior), slightly above, superior up; the patient's
#: right then lies on the viewer's left, as in a coronal slice
CAMERA = {"eye": {"x": 0.0, "y": 3.3, "z": 0.15}, "up": {"x": 0.0, "y": 0.0, "z": 1.0}}


@dataclass(frozen=True)
class Surface:
    """One triangle mesh: ``verts`` (N, 3) float32 in RAS+ mm, ``faces`` (M, 3) vertex indices."""

    value: int  # merged class value; 0 for the body surface
    name: str
    rgb: tuple[int, int, int]
    verts: np.ndarray
    faces: np.ndarray
    volume_ml: float
    step: int  # marching-cubes sampling step used (voxels)


def _mesh(mask: np.ndarray, spacing_mm: Sequence[float], offset_vox: np.ndarray, max_faces: int,
          sigma: float = SMOOTH_SIGMA_VOX) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Marching cubes on a boolean crop -> (verts mm relative to the grid origin, faces, step) or None.

    The crop is padded by one voxel so that surfaces close at its border; smoothing that lowers a tiny
    structure below the 0.5 level falls back to the unsmoothed mask."""
    field = np.pad(mask, 1).astype(np.float32)
    smoothed = ndimage.gaussian_filter(field, sigma) if sigma > 0 else field
    if smoothed.max() <= 0.5:
        smoothed = field
    if smoothed.max() <= 0.5 or smoothed.min() >= 0.5:
        return None
    best = None
    for step in range(1, MAX_STEP + 1):
        try:
            verts, faces, _, _ = marching_cubes(smoothed, 0.5, spacing=tuple(float(s) for s in spacing_mm),
                                                step_size=step, allow_degenerate=False)
        except (ValueError, RuntimeError):  # no surface at this step (structure thinner than the step)
            break
        best = (verts, faces, step)
        if len(faces) <= max_faces:
            break
    if best is None:
        return None
    verts, faces, step = best
    verts = verts + (np.asarray(offset_vox, float) - 1.0) * np.asarray(spacing_mm, float)
    return verts, faces, step


def _pack(value: int, name: str, rgb: tuple[int, int, int], mesh: tuple[np.ndarray, np.ndarray, int],
          origin_mm: Sequence[float], volume_ml: float) -> Surface:
    verts, faces, step = mesh
    verts = (verts + np.asarray(origin_mm, float)).astype(np.float32)
    dtype = np.uint16 if len(verts) <= np.iinfo(np.uint16).max else np.uint32
    return Surface(value, name, rgb, verts, faces.astype(dtype), float(volume_ml), step)


def organ_surfaces(seg: np.ndarray, spacing_mm: Sequence[float], *, origin_mm: Sequence[float] = (0.0, 0.0, 0.0),
                   classes: Iterable[int] | None = None, max_faces: int = MAX_FACES_ORGAN) -> list[Surface]:
    """One :class:`Surface` per merged class present in ``seg`` ((X, Y, Z) uint8, RAS+), in class order.

    ``classes`` restricts the classes meshed (default: every coloured class); a class with no voxels, or
    too thin to give a surface, is left out."""
    seg = np.asarray(seg)
    if seg.ndim != 3:
        raise ValueError(f"organ_surfaces: seg must be 3D (X, Y, Z), got shape {seg.shape}")
    if len(spacing_mm) != 3 or min(float(s) for s in spacing_mm) <= 0:
        raise ValueError(f"organ_surfaces: spacing_mm must be 3 positive values, got {tuple(spacing_mm)}")
    wanted = set(MERGED_COLOURS) if classes is None else {int(c) for c in classes} & set(MERGED_COLOURS)
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    boxes = ndimage.find_objects(seg.astype(np.int32, copy=False)) if seg.size else []
    out = []
    for value, box in enumerate(boxes, start=1):
        if box is None or value not in wanted:
            continue
        mask = seg[box] == value
        mesh = _mesh(mask, spacing_mm, np.array([s.start for s in box]), max_faces)
        if mesh is not None:
            name = MERGED_CLASSES.get(value, str(value)).replace("_", " ")
            out.append(_pack(value, name, MERGED_COLOURS[value], mesh, origin_mm, mask.sum() * voxel_ml))
    return out


def body_surface(spacing_mm: Sequence[float], *, ct: np.ndarray | None = None, seg: np.ndarray | None = None,
                 origin_mm: Sequence[float] = (0.0, 0.0, 0.0), max_faces: int = MAX_FACES_BODY) -> Surface | None:
    """The body's outer surface: from ``ct`` (HU above -500, largest connected region, axial holes filled)
    or, without a CT, from ``seg > 0``; None when there is no body."""
    if ct is not None:
        mask = largest_body(ct)
    elif seg is not None:
        mask = np.asarray(seg) > 0
    else:
        raise ValueError("body_surface: give a CT (HU) or a label map")
    box = ndimage.find_objects(mask.astype(np.uint8))
    if not box or box[0] is None:
        return None
    crop = mask[box[0]]
    mesh = _mesh(crop, spacing_mm, np.array([s.start for s in box[0]]), max_faces)
    if mesh is None:
        return None
    return _pack(0, BODY_NAME, BODY_COLOUR, mesh, origin_mm, crop.sum() * float(np.prod(spacing_mm)) / 1000.0)


def mesh_trace(surface: Surface, *, opacity: float = 1.0) -> go.Mesh3d:
    """A legend-toggled ``go.Mesh3d`` of one surface (hover: name and volume)."""
    v, f = surface.verts, surface.faces
    return go.Mesh3d(
        x=v[:, 0], y=v[:, 1], z=v[:, 2], i=f[:, 0], j=f[:, 1], k=f[:, 2],
        name=surface.name, legendgroup=surface.name, showlegend=True, opacity=opacity,
        color="rgb({},{},{})".format(*surface.rgb), flatshading=False,
        lighting={"ambient": 0.45, "diffuse": 0.8, "specular": 0.15, "roughness": 0.7, "fresnel": 0.1},
        hovertemplate=f"{surface.name}<br>{surface.volume_ml:,.0f} mL<extra></extra>",
    )


def organ_figure(seg: np.ndarray, spacing_mm: Sequence[float], *, ct: np.ndarray | None = None,
                 origin_mm: Sequence[float] = (0.0, 0.0, 0.0), classes: Iterable[int] | None = None,
                 body: bool = True, body_opacity: float = BODY_OPACITY, height_px: int = 720) -> go.Figure:
    """Plotly 3D figure of a patient: one mesh per organ class present in ``seg`` (legend toggles it)
    and, if ``body``, the body surface at ``body_opacity`` (from ``ct`` when given, else ``seg > 0``).

    ``seg`` (and ``ct``, HU) are ``(X, Y, Z)`` RAS+ arrays; ``spacing_mm`` (sx, sy, sz); coordinates in mm.
    An empty label map with no CT gives a figure without traces."""
    if not 0.0 < body_opacity <= 1.0:
        raise ValueError(f"organ_figure: body_opacity must be in (0, 1], got {body_opacity}")
    if ct is not None and np.shape(ct) != np.shape(seg):
        raise ValueError(f"organ_figure: CT {np.shape(ct)} and labels {np.shape(seg)} differ in shape")
    traces = [mesh_trace(s) for s in organ_surfaces(seg, spacing_mm, origin_mm=origin_mm, classes=classes)]
    if body:
        skin = body_surface(spacing_mm, ct=ct, seg=seg, origin_mm=origin_mm)
        if skin is not None:
            trace = mesh_trace(skin, opacity=body_opacity)
            trace.update(hoverinfo="skip", hovertemplate=None)
            traces.append(trace)
    fig = go.Figure(traces)
    axis = {"showbackground": False, "showspikes": False, "ticksuffix": " mm", "gridcolor": "#dddddd"}
    fig.update_layout(
        height=height_px, margin={"l": 0, "r": 0, "t": 10, "b": 0}, uirevision="organs",
        legend={"title": {"text": "Click to hide / show"}, "itemsizing": "constant", "x": 0.0, "y": 1.0},
        scene={"aspectmode": "data", "camera": CAMERA,
               "xaxis": {**axis, "title": {"text": "R (x)"}}, "yaxis": {**axis, "title": {"text": "A (y)"}},
               "zaxis": {**axis, "title": {"text": "S (z)"}}},
    )
    return fig
