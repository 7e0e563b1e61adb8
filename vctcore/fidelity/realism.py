"""Realism distance: a Fréchet distance (FID-style) between features of 2D slices in three planes.

Feature extractor (ships offline, no ImageNet weights): the encoder of the independent segmenter
(:class:`vctcore.checkers.segmenter.SegUNet`), applied slice by slice. Each CT is resampled to the
segmenter's grid and normalised as for segmentation; ``per_plane`` slices evenly spread over the
body's extent along each axis (axial: along S, coronal: along A, sagittal: along R) are encoded as
volumes one voxel thick, and each slice's feature vector is the global average of every encoder level
(16 + 32 + 64 + 128 = 240 values for the default network).

Fréchet distance of two feature sets with means m1, m2 and covariances C1, C2:
``|m1 - m2|^2 + trace(C1 + C2 - 2 (C1 C2)^(1/2))``. Values are in this extractor's units, so they are
*not* comparable with Inception FIDs (paper 5.97); the reference is the real-vs-real distance between
two disjoint halves of the real cohort (the floor), computed with the same sample sizes.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import linalg

from vctcore.checkers.segmenter import Segmenter, normalise, to_work_grid
from vctcore.volume import CTVolume

PLANES = ("axial", "coronal", "sagittal")
#: slice axis of each plane in (X, Y, Z) arrays
PLANE_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}
BODY_HU = -500.0


def slice_positions(body: np.ndarray, axis: int, k: int) -> list[int]:
    """``k`` slice indices evenly spread over the body's extent along ``axis`` (centres of k equal parts)."""
    other = tuple(a for a in range(3) if a != axis)
    idx = np.flatnonzero(body.any(axis=other))
    if idx.size == 0:
        idx = np.arange(body.shape[axis])
    lo, hi = idx[0], idx[-1] + 1
    return sorted({int(lo + (i + 0.5) * (hi - lo) / k) for i in range(k)})


@torch.no_grad()
def slice_features(segmenter: Segmenter, ct: CTVolume, per_plane: int = 16) -> dict[str, np.ndarray]:
    """Per plane a float32 array (n_slices, n_features) of encoder features of ``ct``'s slices."""
    if segmenter.net is None:
        raise ValueError("slice features need the U-Net segmenter's encoder")
    net, cfg = segmenter.net, segmenter.cfg
    hu = to_work_grid(np.asarray(ct.data, np.float32), ct.spacing_mm, cfg)
    body = (hu[0, 0] > BODY_HU).numpy()
    x = normalise(hu, cfg)[0, 0]
    out = {}
    for plane in PLANES:
        axis = PLANE_AXIS[plane]
        pos = slice_positions(body, axis, per_plane)
        batch = torch.stack([x.select(axis, p).unsqueeze(axis) for p in pos])[:, None]
        feats = net.encode(batch.to(segmenter.device))
        out[plane] = torch.cat([f.mean(dim=(2, 3, 4)) for f in feats], dim=1).float().cpu().numpy()
    return out


def frechet_distance(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` (n, d) and ``b`` (m, d); n, m >= 2."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be (n, d) with the same d, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        return math.nan
    m1, m2 = a.mean(0), b.mean(0)
    c1, c2 = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    covmean, _ = linalg.sqrtm(c1 @ c2, disp=False)
    if not np.all(np.isfinite(covmean)):
        off = np.eye(len(c1)) * eps
        covmean = linalg.sqrtm((c1 + off) @ (c2 + off))
    covmean = np.real(covmean)
    return float(max(0.0, np.sum((m1 - m2) ** 2) + np.trace(c1) + np.trace(c2) - 2.0 * np.trace(covmean)))


def plane_distances(a: list[dict[str, np.ndarray]], b: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Fréchet distance per plane between two lists of per-patient ``slice_features``, and their mean."""
    out = {}
    for plane in PLANES:
        if not a or not b:
            out[plane] = math.nan
            continue
        out[plane] = frechet_distance(np.concatenate([f[plane] for f in a]), np.concatenate([f[plane] for f in b]))
    vals = [v for v in out.values() if math.isfinite(v)]
    out["mean"] = float(np.mean(vals)) if vals else math.nan
    return out
