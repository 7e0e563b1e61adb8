"""Segmentation backends behind one interface: CT (+ optional label map) -> fine labels.

Every backend returns a :class:`Segmentation`: a uint8 (X, Y, Z) array of fine label values
(``vctcore.labels.FINE_LABELS``; ``UNSPECIFIED_BONE`` for bone whose bone is not identified; 0 outside
the body), the names of the fine structures it identifies, and notes on what it can and cannot
tell apart.

* ``"labels"``: a label map that comes with the CT. A complete fine map (the phantom's, with fat and
  muscle compartments) is used as it is: the body is every labelled voxel, exactly as the phantom
  builder calibrates. A map of organs and bones only (merged 16 classes, TotalSegmentator) is
  converted to fine labels (:mod:`vctcore.measure.vocab`) and completed by HU thresholds for fat,
  muscle and the body outline (:mod:`vctcore.measure.body`).
* ``"threshold"``: HU thresholds only; no organ, muscle or vertebra is identified: body voxels at
  -29..150 HU are ``THRESHOLD_SOFT_TISSUE`` (soft tissue), not skeletal muscle.
* ``"totalsegmentator"``: TotalSegmentator's ``total`` task through its Python API, then as
  "labels". Runs only when its weights are installed; never downloads (no network).
* ``"auto"``: "labels" when a label map is given, else "threshold".
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vctcore.labels import FINE_LABEL_NAMES
from vctcore.measure.body import BodyGeometry, threshold_labels
from vctcore.measure.composition import THRESHOLD_SOFT_TISSUE, UNSPECIFIED_BONE
from vctcore.measure.kernels import apply_lut, slice_tables
from vctcore.measure.vocab import conversion, fine_target, resolve_names, split_sides
from vctcore.volume import CTVolume, LabelMap

BACKENDS = ("auto", "labels", "threshold", "totalsegmentator")
#: fine labels whose presence marks a complete tissue map (fat and muscle compartments drawn)
TISSUE_MARKERS = ("subcutaneous_fat", "skeletal_muscle")
TS_TASK = "total"
THRESHOLD_NOTE = ("threshold backend: no organ, muscle, bone or vertebra is identified; body voxels at -29..150 HU "
                  "are reported as soft tissue (skeletal muscle, organs, bowel wall, vessels and skin together), "
                  "so skeletal muscle and MMP are not measured")
ERR_TS_WEIGHTS = (
    "TotalSegmentator weights not found in {where}; they download on first use, which needs internet "
    "(run `TotalSegmentator -i ct.nii.gz -o seg --fast` once on a machine with internet and copy "
    "{home} here, or set TOTALSEG_HOME_DIR / TOTALSEG_WEIGHTS_PATH to where they are); or use "
    "--backend threshold, or pass a segmentation with --seg"
)


class BackendError(ValueError):
    """A backend cannot run (missing weights, missing label map, unknown name)."""


@dataclass
class Segmentation:
    """Fine labels of one CT (uint8 (X, Y, Z)), what they identify, and how they were made.

    ``vocabulary``: "fine", "merged", "totalsegmentator", "named" (real names of mixed origin) or
    "threshold". ``identified``: fine structure names the source labelled in this CT (threshold
    tissue classes excluded). ``identifiable``: fine names the source's vocabulary can label at all
    (None: no anatomy, threshold backend). ``complete``: fat and muscle come from the labels
    themselves (no thresholds involved). ``tables``: per-slice ``(counts, adj)`` of ``labels`` (see
    :mod:`vctcore.measure.kernels`), computed on the way.
    """

    labels: np.ndarray
    backend: str
    vocabulary: str
    identified: frozenset[str]
    complete: bool
    notes: list[str] = field(default_factory=list)
    identifiable: frozenset[str] | None = None
    tables: tuple[np.ndarray, np.ndarray] | None = None

    def label_map(self, affine: np.ndarray) -> LabelMap:
        """As a :class:`LabelMap` (names: fine labels plus 255 "bone_unspecified" and 254
        "soft_tissue_threshold")."""
        names = {**FINE_LABEL_NAMES, UNSPECIFIED_BONE: "bone_unspecified",
                 THRESHOLD_SOFT_TISSUE: "soft_tissue_threshold"}
        return LabelMap(data=self.labels, affine=affine, names=names)


def segment(ct: CTVolume, seg: LabelMap | None = None, backend: str = "auto", *,
            seg_format: str = "auto", geometry: BodyGeometry | None = None) -> Segmentation:
    """Run ``backend`` on ``ct`` (HU, (X, Y, Z)); ``seg``: a label map on the same grid, if any;
    ``geometry``: the CT's :func:`vctcore.measure.body.body_geometry` when already computed (the
    threshold steps reuse it)."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if seg is not None and (seg.shape != ct.shape or float(np.abs(seg.affine - ct.affine).max()) > 1e-3):
        raise BackendError(f"segmentation grid {seg.shape} does not match the CT grid {ct.shape} "
                           "(shape and affine must agree)")
    if backend == "auto":
        backend = "labels" if seg is not None else "threshold"
    if backend == "threshold":
        labels, counts, adj = threshold_labels(ct.data, ct.spacing_mm, geometry=geometry,
                                               lean_label=THRESHOLD_SOFT_TISSUE)
        return Segmentation(labels, "threshold", "threshold", frozenset(), False, [THRESHOLD_NOTE], None,
                            (counts, adj))
    if backend == "totalsegmentator":
        seg = run_totalsegmentator(ct)
        return _from_labels(ct, seg, "totalsegmentator", "totalsegmentator", geometry)
    if seg is None:
        raise BackendError("backend 'labels' needs a segmentation (--seg); use --backend threshold without one")
    return _from_labels(ct, seg, "labels", seg_format, geometry)


def _from_labels(ct: CTVolume, seg: LabelMap, backend: str, seg_format: str,
                 geometry: BodyGeometry | None = None) -> Segmentation:
    vmax = int(seg.data.max())
    if vmax > 255:
        raise BackendError(f"segmentation value {vmax} is larger than any known label vocabulary uses (fine, merged "
                           "16 classes, TotalSegmentator total: all below 256)")
    counts, adj = slice_tables(ct.data, seg.data)
    total_n, total_adj = counts.sum(axis=0), adj.sum(axis=0)
    present = np.flatnonzero(total_n)
    present = present[present > 0]
    mean_hu = total_adj[present] / total_n[present]
    try:
        names, vocabulary = resolve_names(seg.names, present, mean_hu, seg_format, total_n[present])
    except ImportError as err:  # TotalSegmentator's class map needs its package
        raise BackendError(f"cannot read TotalSegmentator labels: {err}") from None
    lut, splits, source_names = conversion(present, names)
    fine_present = {FINE_LABEL_NAMES[int(v)] for v in lut[present] if 0 < v < len(FINE_LABEL_NAMES)}
    fine_present |= {right for _, _, right in splits}
    identifiable: set[str] = set()
    for name in names.values():
        target = fine_target(name)
        identifiable |= set(target) if isinstance(target, tuple) else set()
    notes = [f"segmentation read as {vocabulary} labels ({len(source_names)} structures)"]
    if all(m in fine_present for m in TISSUE_MARKERS) and not splits:
        if np.array_equal(lut[present], present):  # already fine labels: use as they are
            labels = seg.data if seg.data.dtype == np.uint8 else seg.data.astype(np.uint8)
        else:
            labels = apply_lut(seg.data, lut)
            counts, adj = _remap(counts, lut), _remap(adj, lut)
        return Segmentation(labels, backend, vocabulary, frozenset(fine_present), True, notes,
                            frozenset(identifiable), (counts, adj))
    notes.append("the segmentation has no fat/muscle compartments: body outline, fat and skeletal muscle "
                 "outside its labelled structures come from HU thresholds")
    if vocabulary == "merged":
        notes.append("merged 16-class map: vertebrae are not identified individually, so bone density (L1-L3) "
                     "and L3-level areas are not measurable; bones are counted as one class")
    fine = apply_lut(seg.data, lut)
    split_sides(fine, seg.data, splits, seg.affine)
    labels, counts, adj = threshold_labels(ct.data, ct.spacing_mm, known=fine, geometry=geometry)
    return Segmentation(labels, backend, vocabulary, frozenset(fine_present), False, notes, frozenset(identifiable),
                        (counts, adj))


def _remap(table: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Columns of a (z, value) table summed into their lookup-table targets."""
    out = np.zeros_like(table)
    np.add.at(out.T, lut[: table.shape[1]], table.T)
    return out


# --- TotalSegmentator ------------------------------------------------------------------------------
def totalsegmentator_weights(task: str = TS_TASK, fast: bool = False) -> tuple[list[Path], Path]:
    """Weight folders a TotalSegmentator task needs, and the weights directory (nothing downloaded)."""
    try:
        from totalsegmentator.config import get_totalseg_dir, get_weights_dir
        from totalsegmentator.map_tasks_config import TASK_ID_WEIGHTS_CONFIGS
        from totalsegmentator.python_api import get_task_config
    except ImportError as err:
        raise BackendError(f"the totalsegmentator package is not installed ({err})") from None
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        config = get_task_config(task, fast=fast, quiet=True)
    ids = config["task_id"] if isinstance(config["task_id"], list) else [config["task_id"]]
    weights_dir = get_weights_dir()
    folders = []
    for task_id in ids:
        info = TASK_ID_WEIGHTS_CONFIGS[task_id]
        folders.append(weights_dir / info.get("rel_path", "") / info["foldername"])
    return folders, get_totalseg_dir()


def run_totalsegmentator(ct: CTVolume, *, device: str = "cpu") -> LabelMap:
    """TotalSegmentator ``total`` labels of ``ct`` (values and names of its class map).

    Uses the full-resolution model when its weights are installed, else the 3 mm ("fast") one.
    Raises :class:`BackendError` at once when neither is installed; TotalSegmentator's usage
    statistics upload is switched off for the call, so nothing goes to the network.
    """
    for fast in (False, True):
        folders, home = totalsegmentator_weights(TS_TASK, fast)
        if all(f.exists() for f in folders):
            break
    else:
        raise BackendError(ERR_TS_WEIGHTS.format(where=folders[0].parent, home=home))
    import nibabel as nib
    import totalsegmentator.python_api as api

    from vctcore.measure.vocab import vocabulary_names

    img = nib.Nifti1Image(np.asarray(ct.data, dtype=np.float32), ct.affine)
    original = api.send_usage_stats
    api.send_usage_stats = lambda *a, **k: None  # no network
    try:
        out = api.totalsegmentator(img, None, ml=True, fast=fast, task=TS_TASK, quiet=True, device=device)
    finally:
        api.send_usage_stats = original
    data = np.asarray(out.dataobj).astype(np.uint8)
    names = {v: n for v, n in vocabulary_names("totalsegmentator").items()}
    return LabelMap(data=data, affine=ct.affine, names=names)


__all__ = ["BACKENDS", "THRESHOLD_NOTE", "BackendError", "Segmentation", "run_totalsegmentator", "segment",
           "totalsegmentator_weights"]
