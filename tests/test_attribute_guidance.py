"""Attribute steering: the Gauss-Newton step reaches its targets to first order, leaves unasked
attributes and samples alone, and the sampler applies it only where it should."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vctcore.models.attribute_guidance import (GuidanceConfig, LatentRegressor, LinearGuide, gauss_newton_step,
                                               make_steer, target_matrix)

ATTRS = ("bfp_pct", "mmp_pct", "weight_kg")


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


def _linear_world(n: int = 40, seed: int = 0):
    """Estimates (N, 2, 4, 4, 4) whose attributes are an exact linear function of them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2, 4, 4, 4)).astype(np.float32)
    w = rng.normal(size=(3, x[0].size)).astype(np.float32)
    y = x.reshape(n, -1) @ w.T + np.array([30.0, 35.0, 80.0], np.float32)
    return x, y


def test_linear_guide_reads_a_linear_world_and_its_step_reaches_the_target():
    x, y = _linear_world()
    y[0, 1] = np.nan  # an unmeasured row is left out of the fit
    guide = LinearGuide.fit(ATTRS, {861: x, 734: x}, y, ridge=1e-4)
    assert set(guide.maps) == {861, 734}
    x0 = torch.from_numpy(x[1:3])
    assert torch.allclose(guide.read(x0, 861), torch.from_numpy(y[1:3]), atol=0.05)
    want = torch.tensor([[20.0, 40.0, 70.0], [45.0, math.nan, math.nan]])
    moved = x0 + guide.step(x0, 861, want)
    after = guide.read(moved, 861)
    assert torch.allclose(after[0], want[0], atol=1e-2)
    assert abs(float(after[1, 0]) - 45.0) < 1e-2
    # the second sample asked for BFP only: its step is the smallest that moves BFP, so MMP and weight
    # move only as far as they share that direction
    assert float(guide.step(x0, 861, want)[1].norm()) < float(guide.step(x0, 861, torch.tensor(
        [[20.0, 40.0, 70.0], [45.0, 20.0, 60.0]]))[1].norm())


def test_linear_guide_steers_only_mapped_steps_and_refuses_too_few_rows():
    x, y = _linear_world()
    guide = LinearGuide.fit(ATTRS, {861: x}, y)
    steer = guide.make_steer(guide.targets([{"bfp_pct": 25.0}]))
    x0 = torch.from_numpy(x[:1])
    assert torch.equal(steer(x0, 600), x0)  # a one-map guide steers its own timestep only
    assert not torch.equal(steer(x0, 861), x0)
    two = LinearGuide.fit(ATTRS, {861: x, 734: x}, y)
    assert [two.map_for(t) for t in (999, 870, 800, 790, 734, 680, 660)] == [None, 861, 861, 734, 734, 734, None]
    assert torch.isnan(guide.targets([{"mmp_pct": None}])).all()
    with pytest.raises(ValueError, match="at least 2 trajectories"):
        LinearGuide.fit(ATTRS, {861: x[:1]}, y[:1])


def test_linear_guide_round_trips_through_safetensors_and_refuses_other_files(tmp_path):
    x, y = _linear_world()
    guide = LinearGuide.fit(ATTRS, {861: x, 734: x}, y)
    guide.save(tmp_path / "guide.safetensors")
    back = LinearGuide.load(tmp_path / "guide.safetensors")
    assert back.attributes == ATTRS and set(back.maps) == {861, 734} and back.meta["n_trajectories"] == 40
    x0 = torch.from_numpy(x[:2])
    assert torch.allclose(back.read(x0, 734), guide.read(x0, 734), atol=0.05)  # W stored in float16
    (tmp_path / "junk.safetensors").write_bytes(b"not a guide")
    with pytest.raises(ValueError, match="junk.safetensors: not a composition guide"):
        LinearGuide.load(tmp_path / "junk.safetensors")
