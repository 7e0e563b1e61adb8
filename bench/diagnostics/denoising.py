"""How well a generator's diffusion denoises held-out latents, timestep by timestep, image and segmentation
channels apart.

The training loss mixes every timestep and every latent channel; this separates them. Each held-out
patient is encoded with the generator's own autoencoders into Z = [Z_img, Z_seg], normalised as the
diffusion normalises it, noised to each timestep ``t`` with noise drawn from (seed, patient, t), and the
U-Net's prediction (velocity or noise, as it was trained) is compared with the truth under the
patient's own conditioning bins.

Losses of latents with different codebooks are not comparable as they stand, so each timestep also gets
a yardstick, :func:`per_voxel_bound`: the loss of the best denoiser that knows only how often each code
is used, voxel by voxel, and nothing of its neighbours. A trained U-Net, which also sees the context,
should reach it or go below (measured figures for the shipped generator and the research candidates:
checkpoints/default/notes.md).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from vctcore.devices import autocast
from vctcore.models.autoencoders import snap
from vctcore.models.conditioning import attribute_bins
from vctcore.models.encode import encode_patient

if TYPE_CHECKING:  # a training run's networks; importing it pulls the training stages
    from diagnostics.run_modules import GeneratorModules


@torch.no_grad()
def held_out_denoising_loss(models: GeneratorModules, cts: Sequence[np.ndarray], segs: Sequence[np.ndarray],
                            table: pd.DataFrame, timesteps: Sequence[int], seed: int = 0) -> dict[str, dict[str, float]]:
    """Mean squared error of a generator's diffusion on held-out patients: ``models`` (a vctcore Generator,
    or :class:`GeneratorModules` of a training run), ``cts`` in HU and ``segs`` merged classes, each
    (X, Y, Z) on the generator's grid, ``table`` their attribute rows (conditioning columns as in
    vctcore.attributes; missing ones count as "none").

    Returns ``{str(t): {"image": mse, "segmentation": mse, "all": mse, "image_bound": b,
    "segmentation_bound": b}}`` for every ``t`` in ``timesteps`` (0 <= t < the diffusion's
    train_timesteps), averaged over patients and voxels; the bounds are :func:`per_voxel_bound` of the
    patients' codes (the image latent's top level; the segmentation AE's level, each of its packed
    sub-voxels a draw)."""
    dm, cfg = models.dm, models.cfg
    n_t = cfg.diffusion.train_timesteps
    bad = [t for t in timesteps if not 0 <= int(t) < n_t]
    if bad:
        raise ValueError(f"timesteps {bad} outside the diffusion's 0..{n_t - 1}")
    if not (len(cts) == len(segs) == len(table)):
        raise ValueError(f"{len(cts)} CTs, {len(segs)} label maps and {len(table)} attribute rows: one of each per patient")
    c_img = cfg.image_ae.levels[-1].embedding_dim
    sched = dm.train_scheduler()
    bins_all = torch.from_numpy(attribute_bins(table.reset_index(drop=True), cfg.diffusion.condition_on))
    sums = {int(t): np.zeros(3) for t in timesteps}
    p3, d_seg = cfg.seg_ae.pack ** 3, cfg.seg_ae.level.embedding_dim
    # (group, sub-voxel) -> the patients' codes; each packed sub-voxel has its own normalisation
    codes: dict[tuple[str, int], list[torch.Tensor]] = {}
    for i, (ct, seg) in enumerate(zip(cts, segs)):
        x = torch.from_numpy(np.asarray(ct, dtype=np.float32))[None, None].to(models.device)
        s = torch.from_numpy(np.asarray(seg, dtype=np.int64))[None].to(models.device)
        z = encode_patient(models.ae, models.seg_ae, x, s, cfg).float()
        z0 = dm.normalise(z)
        # the codes themselves (windowed encoding blends them where windows overlap), in the same units
        snapped = dm.normalise(torch.cat([snap(models.ae.levels[-1], z[:, :c_img]),
                                          models.seg_ae.pack(snap(models.seg_ae.vq, models.seg_ae.unpack(z[:, c_img:])))], 1))[0]
        codes.setdefault(("image", 0), []).append(snapped[:c_img].reshape(c_img, -1).T.cpu())
        for k in range(p3):  # packed channel c * p3 + k is code dimension c of sub-voxel k
            part = snapped[[c_img + c * p3 + k for c in range(d_seg)]].reshape(d_seg, -1).T.cpu()
            codes.setdefault(("segmentation", k), []).append(part)
        bins = bins_all[i:i + 1].to(models.device)
        for t in sums:
            g = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, i, t]).generate_state(1)[0]))
            noise = torch.randn(z0.shape, generator=g).to(models.device)
            tt = torch.full((1,), t, dtype=torch.long, device=models.device)
            zt = sched.add_noise(z0, noise, tt)
            target = sched.get_velocity(z0, noise, tt) if cfg.diffusion.prediction_type == "v_prediction" else noise
            with autocast(models.device, cfg.precision):
                pred = dm(zt, tt, bins)
            err = (pred.float() - target).pow(2).mean(dim=(0, 2, 3, 4)).cpu().numpy()  # per channel
            sums[t] += [err[:c_img].mean(), err[c_img:].mean(), err.mean()]
    out = {str(t): dict(zip(("image", "segmentation", "all"), (float(v) for v in s / len(cts))))
           for t, s in sums.items()}
    bounds: dict[str, list[dict[int, float]]] = {}
    for (group, _), vecs in codes.items():
        found, counts = torch.unique(torch.cat(vecs).double(), dim=0, return_counts=True)
        bounds.setdefault(group, []).append(
            per_voxel_bound(found, counts, sched.alphas_cumprod, list(sums), cfg.diffusion.prediction_type, seed=seed))
    for group, per_part in bounds.items():  # the sub-voxels weigh alike, as their channels do in the loss
        for t in sums:
            out[str(t)][f"{group}_bound"] = float(np.mean([b[t] for b in per_part]))
    return out


def per_voxel_bound(codes: torch.Tensor, counts: torch.Tensor, alphas_cumprod: torch.Tensor, timesteps: Sequence[int],
                    prediction_type: str = "v_prediction", n: int = 20000, seed: int = 0) -> dict[int, float]:
    """Mean squared error per dimension of the Bayes-optimal prediction (velocity or noise) at each timestep
    when a latent voxel is one of ``codes`` (K, D; normalised units) drawn with frequencies ``counts`` (K,)
    and the denoiser knows nothing else: the posterior over codes given the noisy voxel gives the best
    estimate of the clean one. Monte Carlo over ``n`` draws from ``seed``. Close codes make it small (a
    confusion costs little), far-apart codes too (no confusion); the cost peaks between."""
    prior = counts.double() / counts.sum()
    g = torch.Generator().manual_seed(seed)
    codes = codes.double()
    z0 = codes[torch.multinomial(prior, n, replacement=True, generator=g)]
    out = {}
    for t in timesteps:
        a, s = float(alphas_cumprod[t]) ** 0.5, float(1 - alphas_cumprod[t]) ** 0.5
        eps = torch.randn(z0.shape, generator=g, dtype=torch.double)
        zt = a * z0 + s * eps
        err = []
        for part in torch.split(torch.arange(n), 2048):  # (chunk, K) posteriors
            logp = prior.log()[None] - torch.cdist(zt[part], a * codes).pow(2) / (2 * s * s)
            z0_hat = logp.softmax(1) @ codes
            eps_hat = (zt[part] - a * z0_hat) / s
            if prediction_type == "v_prediction":
                err.append((a * (eps[part] - eps_hat) - s * (z0[part] - z0_hat)).pow(2))
            else:
                err.append((eps[part] - eps_hat).pow(2))
        out[int(t)] = float(torch.cat(err).mean())
    return out
