"""Single-sample 3D convolutions on CPU through oneDNN.

torch picks the native im2col kernel over oneDNN for an fp32 CPU convolution whose batch is 1 and whose
``N * C * D * H`` is at most 20480 (a heuristic in ``aten/src/ATen/native/Convolution.cpp`` tuned for 2D
images). The generator's diffusion U-Net (96 channels on a 16 x 12 x 34 grid) and its post-processor's
64^3 windows fall under it, and the native kernel runs them several times slower than oneDNN (docs/timings.md).
torch offers no switch for the heuristic, so :func:`route_convolutions_to_onednn` sends the
convolutions of an inference module to ``torch.mkldnn_convolution`` (the same oneDNN kernel torch itself
uses above the threshold) and leaves every other case to torch.
"""
from __future__ import annotations

import types

import torch
from torch import nn


def _onednn_conv_forward(self: nn.Conv3d, x: torch.Tensor, weight: torch.Tensor,
                         bias: torch.Tensor | None) -> torch.Tensor:
    if (x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and self.padding_mode == "zeros" and not isinstance(self.padding, str)
            and not torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")):
        return torch.mkldnn_convolution(x, weight, bias, self.padding, self.stride, self.dilation, self.groups)
    return nn.Conv3d._conv_forward(self, x, weight, bias)


def route_convolutions_to_onednn(module: nn.Module) -> nn.Module:
    """``module`` with each ``nn.Conv3d`` in it running fp32 CPU inference through oneDNN whatever its batch
    and size (training, autocast, CUDA and other dtypes keep torch's own dispatch). Returns ``module``."""
    if torch.backends.mkldnn.is_available():
        for m in module.modules():
            if type(m) is nn.Conv3d:
                m._conv_forward = types.MethodType(_onednn_conv_forward, m)
    return module
