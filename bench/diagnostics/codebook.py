"""How far apart a VQ codebook's used codes lie, in the units the latent diffusion works in.

The diffusion samples a latent normalised per channel (its ``latent_std``), and generation snaps each
sampled voxel to the nearest code. When the codes a cohort uses lie close together in those units, a
sample must land within a small fraction of a standard deviation of the right code, or the snapped
code (and the segmentation decoded from it) changes (crowded codes came with speckled samples:
checkpoints/default/notes.md). Written here because MONAI's VQ-VAE reports codebook perplexity, not
distances between codes.

Spacing alone does not say how fragile the decoding is, since neighbouring codes may decode alike:
:func:`perturb_latent` and :func:`vctcore.label_islands.fragments` measure it directly (Dice and connected components after the
latent is moved by a given number of SDs; ``bench/seg_ae.py --noise``; figures in checkpoints/default/notes.md).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

#: more distinct vectors than this: not snapped codes (the paper's codebooks have 4096 codes)
MAX_CODES = 16384


def used_code_spacing(latents: Sequence[torch.Tensor]) -> dict[str, float | None]:
    """Spacing of the codes used in snapped ``latents`` (each (C, X, Y, Z), the VQ level's own grid).

    Every channel is divided by its standard deviation over all voxels (as the diffusion normalises); for
    each distinct code used, the Euclidean distance to the nearest other used code. Returns
    ``used_codes``; ``nearest_used_code_sd``: that distance averaged over voxels (weighted by use);
    ``nearest_used_code_sd_p10``: its 10th percentile over voxels (both None when one code is used)."""
    flat = torch.cat([z.detach().float().reshape(z.shape[0], -1) for z in latents], dim=1).T  # (voxels, C)
    sd = flat.std(0).clamp_min(1e-8)
    codes, counts = torch.unique(flat, dim=0, return_counts=True)
    if len(codes) > MAX_CODES:
        raise ValueError(f"{len(codes)} distinct latent vectors: these latents are not snapped to a codebook "
                         f"(at most {MAX_CODES} codes)")
    if len(codes) < 2:  # a collapsed codebook: no distance to report
        return {"used_codes": float(len(codes)), "nearest_used_code_sd": None, "nearest_used_code_sd_p10": None}
    dist = torch.cdist((codes / sd)[None].double(), (codes / sd)[None].double())[0]
    dist.fill_diagonal_(float("inf"))
    nearest = dist.min(1).values
    order = torch.argsort(nearest)
    cum = torch.cumsum(counts[order].double(), 0) / counts.sum()
    p10 = nearest[order][int(torch.searchsorted(cum, torch.tensor(0.1, dtype=cum.dtype)))]
    return {"used_codes": float(len(codes)),
            "nearest_used_code_sd": float((nearest * counts).sum() / counts.sum()),
            "nearest_used_code_sd_p10": float(p10)}


def perturb_latent(z: torch.Tensor, noise_sd: float, seed: int) -> torch.Tensor:
    """``z`` (B, C, X, Y, Z) plus Gaussian noise of ``noise_sd`` x each channel's standard deviation over
    the volume (the diffusion's units), drawn on the CPU from ``seed``: how a sample that missed its codes
    by that much decodes."""
    if noise_sd <= 0:
        return z
    eps = torch.randn(z.shape, generator=torch.Generator().manual_seed(seed)).to(z.device, z.dtype)
    return z + noise_sd * z.std(dim=(0, 2, 3, 4), keepdim=True) * eps
