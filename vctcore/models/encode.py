"""Whole-volume encoding to the joint latent Z = [Z_img, Z_seg] (bounded memory via windows)."""
from __future__ import annotations

import torch

from vctcore.models.autoencoders import SegAE, StackedImageAE, hu_to_unit, one_hot
from vctcore.models.config import GeneratorConfig
from vctcore.models.windowed import windowed

#: image-space window (voxels) above which encoding runs in sliding windows
ENCODE_ROI = (160, 160, 160)


@torch.no_grad()
def encode_patient(ae: StackedImageAE, seg_ae: SegAE, ct_hu: torch.Tensor, seg: torch.Tensor,
                   cfg: GeneratorConfig) -> torch.Tensor:
    """(B, C_img + C_seg, *latent) from CT (B, 1, X, Y, Z) in HU and merged classes (B, X, Y, Z)."""
    x = hu_to_unit(ct_hu, cfg.image_ae.hu_clip)
    z_img = windowed(ae.encode, x, ENCODE_ROI)
    return torch.cat([z_img, encode_segmentation(seg_ae, seg)], dim=1)


@torch.no_grad()
def encode_segmentation(seg_ae: SegAE, seg: torch.Tensor) -> torch.Tensor:
    """Z_seg (B, C_seg, *latent), packed onto the joint latent grid, from merged classes (B, X, Y, Z)."""
    return windowed(seg_ae.encode, one_hot(seg), ENCODE_ROI)
