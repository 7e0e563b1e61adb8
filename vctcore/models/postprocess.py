"""Post-processing U-Net (paper section 4.1.3): restores detail that the autoencoder smooths away.

A residual MONAI ``UNet`` on the decoded image in network units: f(x) = x + g * UNet(x), with an
optional learned gate g that starts at 0 (``PostConfig.residual_gate``). With
``PostConfig.seg_input`` the input also carries the decoded segmentation's class probabilities
(channels 1..17, background first), and with ``PostConfig.condition_on`` the one-hot conditioning bins
of those patient attributes as constant channels (after the class probabilities); only the image
channel 0 is refined. The paper
uses the diffusion U-Net's architecture without conditioning; on the 2-core preset a lighter
U-Net keeps full-resolution convolutions affordable (channels from the preset).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from monai.networks.nets import UNet
from torch import nn

from vctcore.attributes import bin_labels
from vctcore.models.autoencoders import N_SEG_CLASSES
from vctcore.models.conditioning import attribute_bins
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
        return 1 + (N_SEG_CLASSES if self.cfg.seg_input else 0) + condition_channels(self.cfg.condition_on)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] + self.residual(x)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The correction the post-processor adds to the image channel ``x[:, :1]`` (gate applied).
        Inference adds it to a full-precision image itself, so ``x`` may be a bf16 copy of the input."""
        if x.shape[1] != self.in_channels:
            raise ValueError(f"post-processor expects {self.in_channels} input channels, got {x.shape[1]}")
        r = self.net(x)
        return self.gate * r if self.gate is not None else r


def condition_channels(names: Sequence[str]) -> int:
    """Number of one-hot channels for the attributes ``names`` (their bins, "none" included)."""
    return sum(len(bin_labels(n)) for n in names)


def post_conditions(names: Sequence[str], table: pd.DataFrame | Mapping[str, Sequence]) -> torch.Tensor:
    """(N, condition_channels(names)) float one-hot of each row's conditioning bins; missing columns or
    values give the "none" bin."""
    return bins_one_hot(names, attribute_bins(table, names))


def bins_one_hot(names: Sequence[str], bins: np.ndarray) -> torch.Tensor:
    """Bin indices (N, len(names)) int -> (N, condition_channels(names)) float one-hot, attribute after
    attribute."""
    bins = np.asarray(bins, dtype=np.int64)
    out = np.zeros((bins.shape[0], condition_channels(names)), dtype=np.float32)
    start = 0
    for j, name in enumerate(names):
        out[np.arange(bins.shape[0]), start + bins[:, j]] = 1.0
        start += len(bin_labels(name))
    return torch.from_numpy(out)


def post_input(cfg: PostConfig, image: torch.Tensor, seg_logits: torch.Tensor | None,
               conditions: torch.Tensor | None = None, *, dtype: torch.dtype | None = None,
               memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """The post-processor's input: the decoded image (B, 1, X, Y, Z), followed by the softmax of the
    decoded segmentation's logits (B, 17, X, Y, Z) when ``cfg.seg_input`` (``seg_logits`` may be None
    otherwise), followed by ``conditions`` (B, condition_channels) broadcast over the volume when
    ``cfg.condition_on``. ``dtype`` (default: the image's) and ``memory_format`` say how to store it:
    inference on CPU asks bf16 channels-last, what its convolutions read, so no layer converts it again."""
    dtype = image.dtype if dtype is None else dtype
    if cfg.seg_input and seg_logits is None:
        raise ValueError("this post-processor reads the segmentation (seg_input) but got no segmentation logits")
    n_cond = condition_channels(cfg.condition_on) if cfg.condition_on else 0
    if n_cond:
        want = (image.shape[0], n_cond)
        if conditions is None or tuple(conditions.shape) != want:
            got = "none" if conditions is None else tuple(conditions.shape)
            raise ValueError(f"this post-processor reads the attributes {', '.join(cfg.condition_on)} "
                             f"as conditions of shape {want}; got {got}")
    if not cfg.seg_input and not n_cond and dtype == image.dtype and memory_format == torch.contiguous_format:
        return image
    n_seg = N_SEG_CLASSES if cfg.seg_input else 0
    out = torch.empty((image.shape[0], 1 + n_seg + n_cond, *image.shape[2:]), dtype=dtype, device=image.device,
                      memory_format=memory_format)
    out[:, :1] = image
    if n_seg:  # bf16 logits: softmax accumulates in float32 and rounds once, to the stored dtype
        out[:, 1:1 + n_seg] = seg_logits.softmax(1) if seg_logits.dtype == dtype else seg_logits.float().softmax(1)
    if n_cond:
        out[:, 1 + n_seg:] = conditions.to(image.device, dtype)[:, :, None, None, None]
    return out
