"""Bounded-memory whole-volume inference: MONAI sliding windows when a volume exceeds the ROI."""
from __future__ import annotations

from collections.abc import Callable

import torch
from monai.inferers import sliding_window_inference


def windowed(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, roi: tuple[int, int, int] | None,
             overlap: float = 0.25) -> torch.Tensor:
    """``fn(x)`` for (B, C, X, Y, Z) ``x``, in Gaussian-blended windows of ``roi`` voxels when ``x``
    is larger than ``roi`` on any axis (``fn`` may change the spatial scale by a fixed factor)."""
    if roi is None or all(s <= r for s, r in zip(x.shape[2:], roi)):
        return fn(x)
    roi = tuple(min(r, s) for r, s in zip(roi, x.shape[2:]))
    return sliding_window_inference(x, roi_size=roi, sw_batch_size=1, predictor=fn, overlap=overlap,
                                    mode="gaussian", progress=False)
