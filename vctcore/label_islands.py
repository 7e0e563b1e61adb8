"""Small stray islands of a merged-class label map, and their removal.

A generated segmentation is the argmax of decoded class probabilities, and a latent voxel that lands
on a wrong code decodes to a stray speck: a few voxels of, say, bone in fat (generated samples carry
several times a real phantom's count: checkpoints/default/notes.md). They float beside the organs in the
3D view and count as extra components in every connected-component measure.

:func:`remove_small_islands` gives each such island the label that most of its neighbours carry. An
island is a 26-connected component of one organ class that is smaller than the threshold and is not
the largest component of its class, so a small organ (a 5 mL prostate is 17 voxels on the 6 mm grid)
is never erased, whatever its size. scikit-image's ``remove_small_objects`` and MONAI's
``RemoveSmallObjects`` (which wraps it) set small objects to background and would erase a small organ
as well; neither keeps the largest component or asks the neighbours, hence this module.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from vctcore.labels import ORGAN_CLASSES

_CUBE = np.ones((3, 3, 3), bool)


def small_islands(seg: np.ndarray, min_voxels: int) -> list[tuple[int, tuple[slice, ...], np.ndarray]]:
    """The islands of ``seg`` (integer classes, (X, Y, Z); 0 is unlabelled): components of one class
    (26-connected) with fewer than ``min_voxels`` voxels that are not their class's largest. Each as
    (class, bounding box grown by one voxel, boolean mask of the island within that box)."""
    seg = np.asarray(seg)
    if seg.ndim != 3:
        raise ValueError(f"label map must be 3D (X, Y, Z), got shape {seg.shape}")
    found: list[tuple[int, tuple[slice, ...], np.ndarray]] = []
    if min_voxels <= 1:
        return found
    boxes = ndimage.find_objects(seg.astype(np.int32, copy=False))  # one box per class, None if absent
    for c, box in enumerate(boxes, start=1):
        if box is None:
            continue
        # the class's box grown by one voxel (within the array) holds every island's touching neighbours
        box = tuple(slice(max(b.start - 1, 0), min(b.stop + 1, size)) for b, size in zip(box, seg.shape))
        lab, n = ndimage.label(seg[box] == c, structure=_CUBE)
        if n < 2:
            continue
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        largest = int(sizes.argmax())
        small = [k for k in range(1, n + 1) if sizes[k] < min_voxels and k != largest]
        parts = ndimage.find_objects(lab)
        for k in small:
            local = tuple(slice(max(p.start - 1, 0), min(p.stop + 1, size))
                          for p, size in zip(parts[k - 1], lab.shape))
            found.append((c, tuple(slice(b.start + q.start, b.start + q.stop) for b, q in zip(box, local)),
                          lab[local] == k))
    return found


def remove_small_islands(seg: np.ndarray, min_voxels: int) -> tuple[np.ndarray, int]:
    """``seg`` (integer classes, (X, Y, Z)) with every island of :func:`small_islands` relabelled to
    the class most common among the voxels that touch it (26-neighbourhood; ties to the lower class).
    Returns (new label map, number of islands relabelled); ``seg`` itself is left unchanged. Islands
    are judged and relabelled against the input map, so the result does not depend on their order."""
    seg = np.asarray(seg)
    islands = small_islands(seg, min_voxels)
    out = seg.copy()
    n_classes = int(seg.max()) + 1
    for _, box, mask in islands:
        shell = ndimage.binary_dilation(mask, structure=_CUBE) & ~mask
        out[box][mask] = np.bincount(seg[box][shell], minlength=n_classes).argmax()
    return out, len(islands)


def min_island_voxels(min_ml: float, spacing_mm: tuple[float, float, float]) -> int:
    """A volume threshold in mL as a voxel count on a grid of ``spacing_mm`` (mm per axis), rounded up:
    islands below it hold less than ``min_ml`` mL."""
    if min_ml < 0:
        raise ValueError(f"island threshold must be >= 0 mL, got {min_ml}")
    return int(np.ceil(min_ml * 1000.0 / float(np.prod(spacing_mm)) - 1e-9))


def fragments(seg: np.ndarray, classes: Sequence[int] | None = None) -> int:
    """Connected components (26-connected) summed over ``classes`` (default: the organ classes) of a
    merged-label map (X, Y, Z): a real phantom has about one per organ, a speckled segmentation many more."""
    seg = np.asarray(seg)
    present = set(np.unique(seg).tolist())
    return int(sum(ndimage.label(seg == c, structure=_CUBE)[1]
                   for c in (classes or ORGAN_CLASSES) if c in present))
