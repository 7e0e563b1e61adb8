"""Losses of the generator stages: multi-window L1 (paper eq. 3), the bone-interior L1 of the
post-processor, segmentation Dice + CE, patch-adversarial terms (MONAI), and the optional perceptual
loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss, PatchAdversarialLoss

from vctcore.labels import MERGED_BONE_IDS
from vctcore.models.config import ImageAEConfig


def multi_window_l1(pred: torch.Tensor, target: torch.Tensor, target_hu: torch.Tensor, cfg: ImageAEConfig
                    ) -> torch.Tensor:
    """Paper eq. 3: |pred - target| weighted by lambda_soft / lambda_hard / lambda_other according to
    the *target* voxel's HU window (soft tissue, hard tissue, everything else); mean over the patch.
    ``pred``/``target`` in network units, ``target_hu`` the same voxels in HU."""
    w_soft, w_hard, w_other = cfg.mw_weights
    lo_s, hi_s = cfg.soft_window_hu
    lo_h, hi_h = cfg.hard_window_hu
    soft = (target_hu >= lo_s) & (target_hu < hi_s)
    hard = (target_hu >= lo_h) & (target_hu < hi_h) & ~soft
    weight = torch.full_like(target, w_other)
    weight = torch.where(soft, torch.full_like(target, w_soft), weight)
    weight = torch.where(hard, torch.full_like(target, w_hard), weight)
    return (weight * (pred - target).abs()).mean()


def bone_interior(seg: torch.Tensor) -> torch.Tensor:
    """Merged labels (B, X, Y, Z) int -> (B, 1, X, Y, Z) bool: bone voxels (either bone class) whose
    whole 3x3x3 neighbourhood is bone, i.e. the mask eroded by one voxel (voxels beyond the patch edge
    count as bone, so a cut bone keeps its interior at the edge)."""
    bone = torch.zeros_like(seg, dtype=torch.bool)
    for c in MERGED_BONE_IDS:
        bone |= seg == c
    outside = (~bone).float()[:, None]
    return F.max_pool3d(outside, kernel_size=3, stride=1, padding=1) == 0


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |pred - target| over the voxels where ``mask`` is true (0, still differentiable, when none)."""
    m = mask.to(pred.dtype)
    return ((pred - target).abs() * m).sum() / m.sum().clamp(min=1.0)


def segmentation_loss() -> DiceCELoss:
    """Dice + cross-entropy on logits vs one-hot targets (background included in CE, not Dice)."""
    return DiceCELoss(include_background=False, to_onehot_y=False, softmax=True)


def adversarial_loss() -> PatchAdversarialLoss:
    return PatchAdversarialLoss(criterion="least_squares")


def perceptual_loss(spatial_dims: int = 3):
    """MONAI's perceptual loss (fake-3D on 2D slices). Its network weights download on first use;
    on an offline machine they must already be in the torch hub cache: fail early and clearly."""
    from monai.losses import PerceptualLoss

    try:
        return PerceptualLoss(spatial_dims=spatial_dims, network_type="squeeze", is_fake_3d=True, fake_3d_ratio=0.25)
    except Exception as err:  # download failures surface as URLError/HTTPError/RuntimeError
        raise RuntimeError(
            "perceptual loss needs pretrained SqueezeNet/LPIPS weights in the torch hub cache "
            f"({type(err).__name__}: {err}); set perceptual_weight: 0 in the preset on offline machines") from None
