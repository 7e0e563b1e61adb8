"""Binary hole filling by labelling the background once, and the body mask built on it.

``scipy.ndimage.binary_fill_holes`` floods the background from the array border by iterated binary
dilation: one pass over the whole volume per voxel of the longest path through the background, three
calls per measurement, and the fidelity suite measures hundreds of images. Labelling the background's
connected components (one pass) and keeping those that reach beyond the border gives the same mask,
voxel for voxel (tests compare the two), in a fraction of the time.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def fill_holes(mask: np.ndarray, structure: np.ndarray | None = None) -> np.ndarray:
    """``mask`` (bool, any rank) with every background region that does not reach the array border
    filled: what ``scipy.ndimage.binary_fill_holes(mask, structure)`` returns. ``structure``: the
    background's connectivity (a centro-symmetric boolean array; default the cross,
    ``generate_binary_structure(rank, 1)``). A region reaches the border when one of its voxels has a
    ``structure`` neighbour outside the array, so an in-plane structure (X, Y, 1) fills each axial
    slice on its own."""
    mask = np.asarray(mask, dtype=bool)
    if structure is None:
        structure = ndimage.generate_binary_structure(mask.ndim, 1)
    structure = np.asarray(structure, dtype=bool)
    if structure.ndim != mask.ndim or any(n not in (1, 3) for n in structure.shape):
        raise ValueError(f"structure must have the mask's rank {mask.ndim} and 1 or 3 along each axis, "
                         f"got shape {structure.shape}")
    # ndimage.label wants 3 along every axis: an axis of length 1 (no neighbours along it) becomes 0 1 0
    structure = np.pad(structure, [((3 - n) // 2,) * 2 if n == 1 else (0, 0) for n in structure.shape])
    background = ~mask
    lab, n = ndimage.label(background, structure=structure)
    if n == 0:
        return mask.copy()
    outside = np.zeros(n + 1, bool)
    for axis in range(mask.ndim):  # background on a face the structure reaches across: the flood's seeds
        if structure.take([0, 2], axis=axis).any():
            outside[lab.take(0, axis=axis)] = True
            outside[lab.take(-1, axis=axis)] = True
    outside[0] = True  # label 0 is the mask itself
    return ~outside[lab] | mask


#: HU above which a voxel may be body (air and lung parenchyma lie below)
BODY_HU = -500.0
#: in-plane (X, Y) cross: holes are filled per axial slice
IN_PLANE = ndimage.generate_binary_structure(2, 1)[:, :, None]


def largest_body(hu: np.ndarray, threshold_hu: float = BODY_HU) -> np.ndarray:
    """Boolean (X, Y, Z) mask of the patient in a CT ``hu`` (X, Y, Z; HU): the largest connected region
    above ``threshold_hu`` with the holes of every axial slice filled (lungs and airways belong to the body)."""
    mask = np.asarray(hu) > threshold_hu
    lab, n = ndimage.label(mask)
    if n > 1:
        mask = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    return fill_holes(mask, IN_PLANE)
