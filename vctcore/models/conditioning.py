"""Attribute conditioning for classifier-free guidance (paper section 4.1.2).

Each conditioning attribute (sex, age, height, weight; optionally BFP and MMP) is binned with
``vctcore.attributes.bin_index`` (index 0 = "none") and mapped to a learnable embedding of
``dim`` (32 in the paper). The embeddings form a (B, n_attributes, dim) token sequence that the
diffusion U-Net reads through cross-attention. During training whole condition vectors are
dropped to "none" with probability ``p_all`` and single attributes with ``p_each``; sampling
mixes conditional and unconditional predictions with a guidance scale.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from vctcore.attributes import bin_index, bin_labels


def attribute_bins(table: pd.DataFrame | Mapping[str, Sequence], names: Sequence[str]) -> np.ndarray:
    """(N, n_attributes) int64 bin indices; missing attributes or columns give 0 ("none")."""
    n = len(next(iter(table.values()))) if isinstance(table, Mapping) else len(table)
    cols = []
    for name in names:
        if name in table:
            cols.append(bin_index(name, list(table[name])))
        else:
            cols.append(np.zeros(n, dtype=np.int64))
    return np.stack(cols, axis=1) if cols else np.zeros((n, 0), dtype=np.int64)


class AttributeEmbedding(nn.Module):
    """Bin indices (B, n_attributes) -> tokens (B, n_attributes, dim)."""

    def __init__(self, names: Sequence[str], dim: int = 32) -> None:
        super().__init__()
        self.names = tuple(names)
        self.tables = nn.ModuleList(nn.Embedding(len(bin_labels(n)), dim) for n in self.names)

    def forward(self, bins: torch.Tensor) -> torch.Tensor:
        return torch.stack([emb(bins[:, i]) for i, emb in enumerate(self.tables)], dim=1)


def drop_conditions(bins: torch.Tensor, p_all: float, p_each: float, generator: torch.Generator | None = None
                    ) -> torch.Tensor:
    """Training-time condition dropout: set bins to 0 ("none"), all at once or one at a time."""
    b, k = bins.shape
    drop_all = torch.rand(b, 1, generator=generator, device=bins.device) < p_all
    drop_one = torch.rand(b, k, generator=generator, device=bins.device) < p_each
    return torch.where(drop_all | drop_one, torch.zeros_like(bins), bins)
