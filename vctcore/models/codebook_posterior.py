"""The Bayes-optimal denoiser of latent channels that hold codebook vectors, knowing only how often each
code is used: the analytic skip of the diffusion's segmentation channels.

The segmentation latent is a field of VQ codes (packed 2x2x2 onto the joint grid for a 2x segmentation
latent, so each joint voxel holds ``pack3`` sub-voxels of ``dim`` channels). A U-Net that predicts their
velocity must learn the codebook to the precision of its spacing; the 2x/4-channel candidate's codes lie
0.11 SD apart, and after 2800 CPU steps its U-Net stayed 8x above the loss of this context-free
posterior at t = 50 (checkpoints/candidates/seg2x4d/README.md). With the skip, the U-Net's output is added
to this posterior's prediction, so it learns only what the neighbourhood adds (its output convolution
starts at zero, so training starts at the context-free bound).

Given a noisy normalised sub-voxel y = alpha * c + sigma * eps with c one of the codes c_m, drawn with
prior p_m, the posterior is p(m | y) proportional to p_m exp(-|y - alpha c_m|^2 / (2 sigma^2)), its mean
x0_hat = sum_m p(m | y) c_m, and the prediction v_hat = (alpha y - x0_hat) / sigma (eps_hat =
(y - alpha x0_hat) / sigma). The sum runs over the ``n_codes`` most used codes only: the cost is linear in
them (0.8 s per whole-body latent for all 494 used codes of that candidate on 2 cores; the top 40 hold
92 % of its sub-voxels, and neighbouring codes decode alike, session 21).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import nn

#: sub-voxels per chunk of the posterior (memory: batch x pack3 x chunk x n_codes floats)
CHUNK = 16384


class CodebookPosterior(nn.Module):
    """Posterior-mean prediction for joint-latent channels ``first .. first + dim * pack3 - 1`` (packed
    channel ``first + c * pack3 + k`` is code dimension ``c`` of sub-voxel ``k``, MONAI's channel-major
    ``pixelunshuffle``). Buffers: ``codes`` (n_codes, dim) in the autoencoder's raw units and
    ``log_prior`` (pack3, n_codes), set by :meth:`fit`."""

    def __init__(self, first: int, dim: int, pack3: int, n_codes: int) -> None:
        super().__init__()
        self.first, self.dim, self.pack3, self.n_codes = first, dim, pack3, n_codes
        self.register_buffer("codes", torch.zeros(n_codes, dim))
        self.register_buffer("log_prior", torch.full((pack3, n_codes), -float(np.log(n_codes))))

    @property
    def channels(self) -> slice:
        return slice(self.first, self.first + self.dim * self.pack3)

    @torch.no_grad()
    def fit(self, z_raw: np.ndarray | torch.Tensor, codebook: torch.Tensor, std: torch.Tensor | None = None,
            weighting: float = 0.5, seed: int = 0) -> dict[str, float]:
        """Set the codes and priors from training latents ``z_raw`` (N, C, X, Y, Z; raw units, as the
        latents stage stores them) and the autoencoder's ``codebook`` (K, dim).

        Each sub-voxel is assigned its nearest code. When more codes are used than the posterior holds,
        the used codes are grouped by k-means (scikit-learn; in units of ``std``, the diffusion's
        per-channel SD averaged over sub-voxels, when given) with each code weighing its count to the
        power ``weighting`` (0: every code alike, so rare codes far from the common ones keep a group of
        their own; 1: by use), and each group is represented by its members' mean weighted by use (the
        best single stand-in for them in squared error). Each sub-voxel position gets the groups'
        frequencies (add-half smoothed). Returns the mean distance of a sub-voxel's code to its stand-in,
        in SD units when ``std`` is given."""
        from sklearn.cluster import KMeans

        book = codebook.detach().double().cpu().numpy()
        if book.shape[1] != self.dim:
            raise ValueError(f"codebook of {book.shape[1]}-channel codes for a {self.dim}-channel posterior")
        z = z_raw[:, self.channels]
        z = z.double().cpu().numpy() if isinstance(z, torch.Tensor) else np.asarray(z, dtype=np.float64)
        parts = z.reshape(len(z), self.dim, self.pack3, -1).transpose(2, 0, 3, 1).reshape(self.pack3, -1, self.dim)
        tree = cKDTree(book)
        counts = np.zeros((self.pack3, len(book)))
        for k in range(self.pack3):
            idx = tree.query(parts[k], workers=max(1, torch.get_num_threads()))[1]
            counts[k] = np.bincount(idx, minlength=len(book))
        used = np.flatnonzero(counts.sum(0))
        total = counts[:, used].sum(0)
        scale = (np.ones(self.dim) if std is None else
                 std[self.channels].double().cpu().numpy().reshape(self.dim, self.pack3).mean(1))
        if len(used) <= self.n_codes:
            group = np.arange(len(used))
        else:
            km = KMeans(self.n_codes, n_init=4, random_state=seed).fit(book[used] / scale, sample_weight=total ** weighting)
            group = km.labels_
        n_groups = group.max() + 1
        reps = np.zeros((self.n_codes, self.dim))
        grouped = np.full((self.pack3, self.n_codes), 0.0)
        for g in range(n_groups):
            members = group == g
            reps[g] = (book[used][members] * total[members, None]).sum(0) / total[members].sum()
            grouped[:, g] = counts[:, used][:, members].sum(1)
        prior = np.where(np.arange(self.n_codes) < n_groups, grouped + 0.5, 0.0)
        with np.errstate(divide="ignore"):
            log_prior = np.log(prior / prior.sum(1, keepdims=True))
        self.codes.copy_(torch.from_numpy(reps).float())
        self.log_prior.copy_(torch.from_numpy(log_prior).float())
        dist = np.linalg.norm((book[used] - reps[group]) / scale, axis=1)
        return {"groups": int(n_groups), "used_codes": int(len(used)),
                "mean_distance_to_stand_in": float((dist * total).sum() / total.sum())}

    def forward(self, z_t: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor, mean: torch.Tensor,
                std: torch.Tensor, prediction_type: str) -> torch.Tensor:
        """Prediction (velocity or noise) for the posterior's channels of the noisy normalised latent
        ``z_t`` (B, C, X, Y, Z); ``alpha``, ``sigma`` (B,) the noise schedule at each item's timestep;
        ``mean``, ``std`` (C,) the diffusion's normalisation. Returns (B, dim * pack3, X, Y, Z), float32."""
        b, spatial = z_t.shape[0], z_t.shape[2:]
        ch = self.channels
        with torch.autocast(z_t.device.type, enabled=False), torch.no_grad():
            y = z_t[:, ch].float().reshape(b, self.dim, self.pack3, -1).permute(0, 2, 3, 1).contiguous()  # (B, P, V, D)
            mu = mean[ch].float().reshape(self.dim, self.pack3).T[:, None, :]  # (P, 1, D)
            sd = std[ch].float().reshape(self.dim, self.pack3).T[:, None, :]
            codes = ((self.codes[None] - mu) / sd).contiguous()  # (P, M, D): each sub-voxel's codes, normalised
            codes_t = codes.transpose(1, 2).contiguous()
            sq = codes.pow(2).sum(-1)[:, None, :]  # (P, 1, M)
            x0 = torch.empty_like(y)
            # item by item and in chunks of sub-voxels, through baddbmm/bmm: 1.5x faster than einsum here
            for i in range(b):
                a, s2 = float(alpha[i]), float(sigma[i]) ** 2
                bias = self.log_prior[:, None, :] - (a * a / (2 * s2)) * sq
                for lo in range(0, y.shape[2], CHUNK):
                    logits = torch.baddbmm(bias, y[i, :, lo:lo + CHUNK], codes_t, alpha=a / s2)
                    x0[i, :, lo:lo + CHUNK] = torch.bmm(logits.softmax(-1), codes)
            a = alpha.float().view(b, 1, 1, 1)
            sig = sigma.float().view(b, 1, 1, 1)
            pred = (a * y - x0) / sig if prediction_type == "v_prediction" else (y - a * x0) / sig
            return pred.permute(0, 3, 1, 2).reshape(b, self.dim * self.pack3, *spatial)
