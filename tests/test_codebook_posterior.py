"""The codebook posterior skip of the diffusion's segmentation channels (vctcore.models.codebook_posterior):
its prediction is the Bayes-optimal one given only code frequencies, it returns the code at low noise,
its fit groups codes into use-weighted stand-ins, and LatentDiffusion adds it outside guidance."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vctcore.evaluate.denoising import per_voxel_bound
from vctcore.models.codebook_posterior import CodebookPosterior
from vctcore.models.config import DiffusionConfig
from vctcore.models.diffusion import UNET_OUT_CONV, LatentDiffusion

DIM, PACK3, FIRST = 2, 8, 1  # one image channel, then 2-channel codes packed 2x2x2
CODES = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0], [3.0, 3.0], [-3.0, 1.0]])
PRIOR = np.array([0.5, 0.2, 0.15, 0.1, 0.05])


def code_latents(n: int, shape=(6, 6, 6), seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Raw latents (n, 1 + DIM * PACK3, *shape): a random image channel and a code per sub-voxel drawn
    with PRIOR; also the code indices (n, PACK3, voxels)."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(CODES), size=(n, PACK3, int(np.prod(shape))), p=PRIOR)
    seg = CODES[torch.from_numpy(idx)]  # (n, P, V, D)
    seg = seg.permute(0, 3, 1, 2).reshape(n, DIM * PACK3, *shape)  # channel c * PACK3 + k
    img = torch.from_numpy(rng.normal(size=(n, FIRST, *shape))).float()
    return torch.cat([img, seg], 1), idx


def tiny_diffusion(n_codes: int) -> LatentDiffusion:
    cfg = DiffusionConfig(channels=(8, 16), attention_levels=(False, False), norm_num_groups=4,
                          num_head_channels=8, codebook_posterior=n_codes)
    return LatentDiffusion(cfg, FIRST + DIM * PACK3, seg_layout=(FIRST, DIM, PACK3)).eval()


def normalised(dm: LatentDiffusion, z: torch.Tensor) -> torch.Tensor:
    return dm.normalise(z)


def test_with_every_code_the_prediction_is_the_per_voxel_bayes_one():
    """A fresh U-Net's segmentation outputs are zero, so the diffusion's loss there is the posterior's
    alone: it matches per_voxel_bound (a separate Monte Carlo of the same Bayes estimate), sub-voxel
    by sub-voxel in normalised units, at low, middle and high noise."""
    dm = tiny_diffusion(8)
    z, idx = code_latents(6)
    flat = z.transpose(0, 1).reshape(z.shape[1], -1)
    dm.latent_mean.copy_(flat.mean(1))
    dm.latent_std.copy_(flat.std(1))
    fit = dm.codebook.fit(z, CODES, dm.latent_std)
    assert fit["groups"] == 5 and fit["mean_distance_to_stand_in"] == 0.0
    sched = dm.train_scheduler()
    z0 = normalised(dm, z)
    g = torch.Generator().manual_seed(1)
    bins = torch.zeros(len(z), len(dm.cfg.condition_on), dtype=torch.long)
    for t in (150, 400, 800):
        errs = []
        for _ in range(8):
            noise = torch.randn(z0.shape, generator=g)
            tt = torch.full((len(z),), t)
            with torch.no_grad():
                pred = dm(sched.add_noise(z0, noise, tt), tt, bins)
            target = sched.get_velocity(z0, noise, tt)
            errs.append((pred - target)[:, FIRST:].pow(2).mean().item())
        ours = float(np.mean(errs))
        bound = []
        for k in range(PACK3):  # packed channel FIRST + c * PACK3 + k: code dimension c of sub-voxel k
            chans = [FIRST + c * PACK3 + k for c in range(DIM)]
            codes_k = (CODES - dm.latent_mean[chans]) / dm.latent_std[chans]
            counts = torch.from_numpy(np.bincount(idx[:, k].ravel(), minlength=len(CODES)))
            bound.append(per_voxel_bound(codes_k, counts, sched.alphas_cumprod, [t], n=40000, seed=k)[t])
        assert ours == pytest.approx(float(np.mean(bound)), rel=0.08), t


def test_at_low_noise_the_clean_estimate_is_the_code():
    dm = tiny_diffusion(8)
    z, _ = code_latents(2, seed=3)
    flat = z.transpose(0, 1).reshape(z.shape[1], -1)
    dm.latent_mean.copy_(flat.mean(1))
    dm.latent_std.copy_(flat.std(1))
    dm.codebook.fit(z, CODES, dm.latent_std)
    sched = dm.train_scheduler()
    z0 = normalised(dm, z)
    tt = torch.full((2,), 5)
    zt = sched.add_noise(z0, torch.randn(z0.shape, generator=torch.Generator().manual_seed(0)), tt)
    bins = torch.zeros(2, len(dm.cfg.condition_on), dtype=torch.long)
    with torch.no_grad():
        x0 = dm.predict_x0(dm(zt, tt, bins), zt, 5, sched.alphas_cumprod)
    assert torch.allclose(x0[:, FIRST:], z0[:, FIRST:], atol=1e-4)
    assert not torch.allclose(x0[:, :FIRST], z0[:, :FIRST], atol=1e-2)  # the image channel: U-Net alone


def test_fit_groups_codes_into_use_weighted_stand_ins():
    """Two tight pairs and a rare far code into 3 groups: each pair becomes its use-weighted mean, the rare
    code keeps a group of its own (weighting 0), and each sub-voxel's priors sum to 1."""
    book = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.0, 5.1], [-9.0, 4.0]])
    use = [60, 20, 10, 30, 1]
    rng = np.random.default_rng(0)
    idx = rng.permutation(np.repeat(np.arange(5), use) .tolist() * PACK3)
    idx = idx.reshape(1, PACK3, -1)
    seg = book[torch.from_numpy(idx)].permute(0, 3, 1, 2).reshape(1, DIM * PACK3, len(idx[0, 0]), 1, 1)
    z = torch.cat([torch.zeros(1, FIRST, *seg.shape[2:]), seg], 1)
    post = CodebookPosterior(FIRST, DIM, PACK3, 3)
    fit = post.fit(z, book, weighting=0.0)
    assert fit == {"groups": 3, "used_codes": 5, "mean_distance_to_stand_in": pytest.approx(fit["mean_distance_to_stand_in"])}
    reps = {tuple(np.round(r, 4)) for r in post.codes.numpy().tolist()}
    assert reps == {(0.025, 0.0), (5.0, 5.075), (-9.0, 4.0)}
    assert torch.allclose(post.log_prior.exp().sum(1), torch.ones(PACK3))
    with pytest.raises(ValueError, match="3-channel codes"):
        post.fit(z, torch.zeros(4, 3))


def test_the_skip_is_added_once_outside_guidance_and_sampling_is_deterministic():
    dm = tiny_diffusion(8)
    z, _ = code_latents(1, seed=5)
    dm.codebook.fit(z, CODES)
    dm.restart_codebook_outputs()
    with torch.no_grad():  # a U-Net with nonzero outputs everywhere else
        dm.unet.get_parameter(f"{UNET_OUT_CONV.removeprefix('unet.')}.bias")[:FIRST] = 0.5
    zt = torch.randn(z.shape, generator=torch.Generator().manual_seed(0))
    tt = torch.tensor([400])
    ctx = dm.embed(torch.zeros(1, len(dm.cfg.condition_on), dtype=torch.long))
    with torch.no_grad():
        whole, unet = dm.denoise(zt, tt, ctx), dm.unet_output(zt, tt, ctx)
        skip = dm.codebook(zt, dm._alpha[tt], dm._sigma[tt], dm.latent_mean, dm.latent_std, "v_prediction")
    assert torch.equal(whole[:, :FIRST], unet[:, :FIRST])
    assert torch.allclose(whole[:, FIRST:], unet[:, FIRST:] + skip, atol=1e-6)
    bins = torch.tensor([[1, 2, 1, 1]])
    a = dm.sample(bins, zt, steps=4, guidance_scale=3.0, sampler="dpm++")
    b = dm.sample(bins, zt, steps=4, guidance_scale=3.0, sampler="dpm++")
    assert torch.equal(a, b) and torch.isfinite(a).all()


def test_config_and_layout_are_checked():
    with pytest.raises(ValueError, match="codebook_posterior must be 0"):
        DiffusionConfig(codebook_posterior=-1)
    with pytest.raises(ValueError, match="layout"):
        LatentDiffusion(DiffusionConfig(codebook_posterior=4), 17)
