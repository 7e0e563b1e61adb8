"""Post-processing U-Net (paper section 4.1.3): restores detail that the autoencoder smooths away.

A residual MONAI ``UNet`` on the decoded image in network units: f(x) = x + g * UNet(x), with an
optional learned gate g that starts at 0 (``PostConfig.residual_gate``). With
``PostConfig.seg_input`` the input also carries the decoded segmentation's class probabilities
(channels 1..17, background first), and only the image channel 0 is refined. The paper
uses the diffusion U-Net's architecture without conditioning; on the 2-core preset a lighter
U-Net keeps full-resolution convolutions affordable (channels from the preset).
"""
from __future__ import annotations

import torch
from monai.networks.nets import UNet
from torch import nn

from vctcore.models.autoencoders import N_SEG_CLASSES
from vctcore.models.config import PostConfig


class PostProcessor(nn.Module):
    """Residual refinement of a decoded image: in (B, 1 [+ 17 class probabilities], X, Y, Z), out the
    refined image (B, 1, X, Y, Z), network units."""

    def __init__(self, cfg: PostConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = UNet(spatial_dims=3, in_channels=self.in_channels, out_channels=1, channels=cfg.channels,
                        strides=(2,) * (len(cfg.channels) - 1), num_res_units=1, norm="instance")
        # ReZero-style gate (Bachlechner et al. 2020): f(x) = x + g * UNet(x) with g = 0 at the start
        self.gate = nn.Parameter(torch.zeros(())) if cfg.residual_gate else None

    @property
    def in_channels(self) -> int:
        return 1 + N_SEG_CLASSES if self.cfg.seg_input else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_channels:
            raise ValueError(f"post-processor expects {self.in_channels} input channels, got {x.shape[1]}")
        r = self.net(x)
        return x[:, :1] + (self.gate * r if self.gate is not None else r)


def post_input(cfg: PostConfig, image: torch.Tensor, seg_logits: torch.Tensor | None) -> torch.Tensor:
    """The post-processor's input: the decoded image (B, 1, X, Y, Z), followed by the softmax of the
    decoded segmentation's logits (B, 17, X, Y, Z) when ``cfg.seg_input`` (``seg_logits`` may be None
    otherwise)."""
    if not cfg.seg_input:
        return image
    if seg_logits is None:
        raise ValueError("this post-processor reads the segmentation (seg_input) but got no segmentation logits")
    return torch.cat([image, seg_logits.float().softmax(1).to(image.dtype)], dim=1)
