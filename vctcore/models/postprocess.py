"""Post-processing U-Net (paper section 4.1.3): restores detail that the autoencoder smooths away.

A residual MONAI ``UNet`` on the decoded image in network units: f(x) = x + g * UNet(x), with an
optional learned gate g that starts at 0 (``PostConfig.residual_gate``). The paper
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
        # ReZero-style gate (Bachlechner et al. 2020): f(x) = x + g * UNet(x) with g = 0 at the start
        self.gate = nn.Parameter(torch.zeros(())) if cfg.residual_gate else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.net(x)
        return x + (self.gate * r if self.gate is not None else r)
