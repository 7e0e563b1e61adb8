"""Attribute steering: the Gauss-Newton step reaches its targets to first order, leaves unasked
attributes and samples alone, and the sampler applies it only where it should."""
from __future__ import annotations

import math

import pytest
import torch

from vctcore.models.attribute_guidance import (GuidanceConfig, LatentRegressor, gauss_newton_step, make_steer,
                                               target_matrix)


def _regressor(**kw) -> LatentRegressor:
    torch.manual_seed(0)
    reg = LatentRegressor(GuidanceConfig(attributes=("bfp_pct", "mmp_pct", "weight_kg"), width=8, **kw), 4)
    reg.mean.copy_(torch.tensor([30.0, 35.0, 80.0]))
    reg.std.copy_(torch.tensor([8.0, 6.0, 15.0]))
    return reg.eval()


def test_step_reaches_small_targets_to_first_order():
    reg = _regressor()
    x0 = torch.randn(2, 4, 16, 16, 16)
    with torch.no_grad():
        now = reg.standardised(x0)
    targets = now + 1e-3 * torch.tensor([[5.0, -4.0, 3.0], [-2.0, 5.0, 1.0]])
    moved = x0 + gauss_newton_step(reg, x0, targets)
    with torch.no_grad():
        after = reg.standardised(moved)
    before_err = (now - targets).abs().max()
    assert (after - targets).abs().max() < 0.1 * before_err


def test_unasked_attributes_and_samples_are_free():
    reg = _regressor()
    x0 = torch.randn(2, 4, 16, 16, 16)
    with torch.no_grad():
        now = reg.standardised(x0)
    targets = torch.full_like(now, math.nan)
    targets[0, 0] = now[0, 0] + 5e-3  # sample 0 asks for body fat only; sample 1 for nothing
    step = gauss_newton_step(reg, x0, targets)
    assert torch.count_nonzero(step[1]) == 0
    with torch.no_grad():
        after = reg.standardised(x0 + step)
    assert abs(float(after[0, 0] - targets[0, 0])) < 5e-4
    # the minimum-norm step for one attribute is along that attribute's gradient alone
    x = x0[:1].clone().requires_grad_(True)
    grad = torch.autograd.grad(reg.standardised(x)[0, 0], x)[0]
    cos = torch.nn.functional.cosine_similarity(step[0].flatten(), grad[0].flatten(), dim=0)
    assert float(cos) > 0.999


def test_targets_in_units_are_standardised_and_missing_is_nan():
    reg = _regressor()
    t = target_matrix(reg, [{"bfp_pct": 38.0, "weight_kg": None}, {"mmp_pct": float("nan"), "weight_kg": 95.0}])
    assert t[0, 0].item() == pytest.approx(1.0)
    assert math.isnan(t[0, 1]) and math.isnan(t[0, 2]) and math.isnan(t[1, 0]) and math.isnan(t[1, 1])
    assert t[1, 2].item() == pytest.approx(1.0)


def test_steer_only_at_noisy_steps():
    reg = _regressor(min_timestep=200, strength=0.5)
    x0 = torch.randn(1, 4, 16, 16, 16)
    with torch.no_grad():
        targets = reg.standardised(x0) + 0.05
    steer = make_steer(reg, targets)
    assert torch.equal(steer(x0, 199), x0)
    moved = steer(x0, 200)
    full = x0 + gauss_newton_step(reg, x0, targets)
    assert torch.allclose(moved - x0, 0.5 * (full - x0), atol=1e-6)


@pytest.mark.parametrize("bad", [{"attributes": []}, {"strength": 0}, {"iterations": 0}, {"colour": 1}])
def test_config_refuses_nonsense(bad):
    with pytest.raises(ValueError):
        GuidanceConfig.from_dict({"attributes": ["bfp_pct"], **bad})


def test_coarse_step_is_blockwise_constant_and_reaches_targets():
    reg = _regressor()
    x0 = torch.randn(1, 4, 16, 16, 16)
    with torch.no_grad():
        now = reg.standardised(x0)
    targets = now + 1e-3 * torch.tensor([[4.0, -3.0, 2.0]])
    step = gauss_newton_step(reg, x0, targets, coarse=4)
    blocks = step.view(1, 4, 4, 4, 4, 4, 4, 4)  # (B, C, X/4, 4, Y/4, 4, Z/4, 4)
    assert torch.allclose(blocks, blocks[:, :, :, :1, :, :1, :, :1].expand_as(blocks))
    with torch.no_grad():
        after = reg.standardised(x0 + step)
    assert (after - targets).abs().max() < 0.1 * (now - targets).abs().max()


def test_sampler_hands_every_clean_estimate_to_steer_and_uses_its_result():
    from dataclasses import replace

    from vctcore.models.config import load_preset
    from vctcore.models.diffusion import LatentDiffusion

    cfg = replace(load_preset("cpu").diffusion, sampler="dpm++")
    dm = LatentDiffusion(cfg, 8).eval()
    noise = torch.randn(1, 8, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    bins = torch.tensor([[1, 2, 3, 4]])
    seen = []

    def steer(x0, t):
        seen.append(t)
        return torch.full_like(x0, 0.5)  # the last step returns the (steered) clean estimate itself

    out = dm.sample(bins, noise, steps=3, steer=steer)
    assert len(seen) == 3 and seen == sorted(seen, reverse=True)
    assert torch.allclose(dm.normalise(out), torch.full_like(out, 0.5), atol=1e-5)
    with pytest.raises(ValueError, match="dpm"):
        dm.sample(bins, noise, steps=2, sampler="ddim", steer=steer)
