"""Stacked VQ-VAE image autoencoder and segmentation autoencoder (paper section 4.1.1).

Both wrap MONAI's ``VQVAE``. Tensors are (B, C, X, Y, Z). Images enter in normalised HU
(``hu_to_unit``: -1000 HU -> -1, 0 HU -> 0, 1000 HU -> 1); segmentations enter one-hot over the
background plus the 16 merged classes of ``vctcore.labels.MERGED_CLASSES``.
"""
from __future__ import annotations

import numpy as np
import torch
from monai.networks.nets import VQVAE
from monai.networks.utils import pixelshuffle, pixelunshuffle
from scipy.spatial import cKDTree
from torch import nn

from vctcore.labels import MERGED_CLASSES
from vctcore.models.config import ImageAEConfig, SegAEConfig, VQLevel

N_SEG_CLASSES = len(MERGED_CLASSES)  # background (0) + 16 organ classes


def hu_to_unit(hu: torch.Tensor, clip: tuple[float, float] = (-1024.0, 3071.0)) -> torch.Tensor:
    """HU -> network units: clip to ``clip`` then (HU / 1000)."""
    return hu.clamp(*clip) / 1000.0


def unit_to_hu(x: torch.Tensor, clip: tuple[float, float] = (-1024.0, 3071.0)) -> torch.Tensor:
    """Inverse of ``hu_to_unit`` (HU, clipped to ``clip``)."""
    return (x * 1000.0).clamp(*clip)


def build_vq_level(level: VQLevel, out_channels: int | None = None) -> VQVAE:
    """One VQ-VAE level that halves every axis ``len(level.channels)`` times."""
    n = len(level.channels)
    return VQVAE(
        spatial_dims=3,
        in_channels=level.in_channels,
        out_channels=out_channels or level.in_channels,
        channels=level.channels,
        num_res_layers=level.num_res_layers,
        num_res_channels=level.channels,
        downsample_parameters=((2, 4, 1, 1),) * n,
        upsample_parameters=((2, 4, 1, 1, 0),) * n,
        num_embeddings=level.num_embeddings,
        embedding_dim=level.embedding_dim,
    )


#: code channels up to which ``snap`` searches with a KD-tree on CPU (measured faster up to 8)
KD_TREE_MAX_DIM = 8


def snap(vq: VQVAE, z: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Nearest codebook vectors of ``vq`` for every latent voxel of ``z`` (B, C, X, Y, Z).

    Same result as MONAI's quantizer, written here because MONAI's builds a dense
    (voxels x codebook) one-hot matrix, which costs seconds and GBs on a whole-body latent;
    this does the same nearest-neighbour search without it (inference only). On CPU, for codes of at
    most ``KD_TREE_MAX_DIM`` channels, scipy's KD-tree answers it with exact float64 distances (faster than
    the chunked distance matrix for few channels; 16-channel codes are faster as the matrix). Elsewhere the
    distance matrix in chunks (fp32), which agrees except at near-ties.
    """
    emb = vq.quantizer.quantizer.embedding.weight.float()  # (K, C)
    flat = z.permute(0, 2, 3, 4, 1).reshape(-1, z.shape[1]).float()
    if z.device.type == "cpu" and emb.shape[1] <= KD_TREE_MAX_DIM:
        tree = cKDTree(emb.detach().double().numpy())
        _, found = tree.query(flat.detach().double().numpy(), workers=torch.get_num_threads())
        idx = torch.from_numpy(found.astype(np.int64))
    else:
        idx = torch.empty(flat.shape[0], dtype=torch.long, device=z.device)
        with torch.autocast(z.device.type, enabled=False):  # nearest neighbours need fp32 distances
            e2 = (emb * emb).sum(1)
            for i in range(0, flat.shape[0], chunk):
                part = flat[i:i + chunk]
                idx[i:i + chunk] = torch.argmin(e2.unsqueeze(0) - 2.0 * part @ emb.t(), dim=1)
    out = torch.nn.functional.embedding(idx, emb).to(z.dtype)
    b, c, x, y, w = z.shape
    return out.reshape(b, x, y, w, c).permute(0, 4, 1, 2, 3).contiguous()


def quantise(vq: VQVAE, z: torch.Tensor) -> torch.Tensor:
    """Quantised latent: MONAI's EMA quantizer while training, the fast ``snap`` otherwise."""
    return vq.quantize(z)[0] if vq.training else snap(vq, z)


class StackedImageAE(nn.Module):
    """E_img = E2 o E1 and D_img = D1 o D2 (levels trained one after the other, level 1 first).

    ``levels[0]`` maps a 1-channel image to ``levels[0].embedding_dim`` channels; ``levels[l]``
    compresses the quantised latent of level ``l-1``.
    """

    def __init__(self, cfg: ImageAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.levels = nn.ModuleList(build_vq_level(lv) for lv in cfg.levels)

    def encode(self, x: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        """Quantised latent after ``upto`` levels (all levels by default); ``x`` in network units.

        Without ``cfg.snap_between_levels`` the lower levels pass their continuous encodings up
        (level l+1 is trained on them), and only the returned latent is quantised.
        """
        n = upto if upto is not None else len(self.levels)
        z = x
        for i, vq in enumerate(self.levels[:n]):
            z = vq.encode(z)
            if i == n - 1 or self.cfg.snap_between_levels:
                z = quantise(vq, z)
        return z

    def decode(self, z: torch.Tensor, start: int | None = None) -> torch.Tensor:
        """Image (network units) from a latent of level ``start`` (top level by default).

        Intermediate outputs are snapped to the lower level's codebook when
        ``cfg.snap_between_levels`` (the lower decoder then sees the inputs it was trained on).
        """
        top = len(self.levels) if start is None else start
        for i in range(top - 1, -1, -1):
            vq = self.levels[i]
            z = vq.decode(quantise(vq, z) if (i == top - 1 or self.cfg.snap_between_levels) else z)
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class SegAE(nn.Module):
    """Segmentation autoencoder: one-hot (B, 17, X, Y, Z) -> latent -> class logits.

    ``encode`` returns the latent packed onto the joint latent grid (``cfg.pack``, space-to-depth) and
    ``decode`` reads it so; ``forward`` (training) and ``vq`` work on the level's own, finer grid.
    """

    def __init__(self, cfg: SegAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.vq = build_vq_level(cfg.level, out_channels=N_SEG_CLASSES)

    def pack(self, z: torch.Tensor) -> torch.Tensor:
        """The level's latent (B, C, x, y, z) -> the joint grid's (B, C * pack^3, x/pack, y/pack, z/pack)."""
        return pixelunshuffle(z, 3, self.cfg.pack) if self.cfg.pack > 1 else z

    def unpack(self, z: torch.Tensor) -> torch.Tensor:
        """Inverse of ``pack``: what the level's decoder reads."""
        return pixelshuffle(z, 3, self.cfg.pack) if self.cfg.pack > 1 else z

    def codes(self, onehot: torch.Tensor) -> torch.Tensor:
        """Quantised latent on the level's own grid: what its decoder reads."""
        return quantise(self.vq, self.vq.encode(onehot))

    def encode(self, onehot: torch.Tensor) -> torch.Tensor:
        """Quantised latent packed onto the joint latent grid."""
        return self.pack(self.codes(onehot))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Class logits (B, 17, X, Y, Z) from a packed latent (snapped to the codebook first)."""
        return self.vq.decode(quantise(self.vq, self.unpack(z)))

    def forward(self, onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, quantisation loss)."""
        return self.vq(onehot)


def one_hot(seg: torch.Tensor) -> torch.Tensor:
    """(B, X, Y, Z) integer merged classes -> (B, 17, X, Y, Z) float one-hot."""
    return torch.nn.functional.one_hot(seg.long(), N_SEG_CLASSES).permute(0, 4, 1, 2, 3).float()
