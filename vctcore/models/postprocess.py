"""Post-processing U-Net (paper section 4.1.3): restores detail that the autoencoder smooths away.

A residual MONAI ``UNet`` on the decoded image in network units: f(x) = x + UNet(x). The paper
uses the diffusion U-Net's architecture without conditioning; on the 2-core preset a lighter
U-Net keeps full-resolution convolutions affordable (channels from the preset).
"""
from __future__ import annotations

import torch
from monai.networks.nets import UNet
from torch import nn

from vctcore.models.config import PostConfig


class PostProcessor(nn.Module):
    """Residual refinement of a decoded image (B, 1, X, Y, Z), network units in and out."""

    def __init__(self, cfg: PostConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = UNet(spatial_dims=3, in_channels=1, out_channels=1, channels=cfg.channels,
                        strides=(2,) * (len(cfg.channels) - 1), num_res_units=1, norm="instance")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)
