"""DPM-Solver++(2M) against the exact probability-flow ODE solution for Gaussian data, and beside
MONAI's DDIM on the same problem."""
from __future__ import annotations

import pytest
import torch
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

from vctcore.models.samplers import dpm_solver_pp_2m, dpm_timesteps

S = 1.0  # std of the data distribution N(0, S^2): the diffusion runs on latents normalised to std 1


def _schedule() -> torch.Tensor:
    return DDPMScheduler(num_train_timesteps=1000, schedule="scaled_linear_beta", beta_start=0.0015,
                         beta_end=0.0195).alphas_cumprod


def _exact_x0(acp: torch.Tensor):
    """E[x0 | x_t] for x0 ~ N(0, S^2): alpha S^2 / (alpha^2 S^2 + sigma^2) x_t."""
    def f(x: torch.Tensor, t: int) -> torch.Tensor:
        a = acp[t].double()
        return a.sqrt() * S**2 / (a * S**2 + 1 - a) * x
    return f


def _ode_solution(x_t: torch.Tensor, acp: torch.Tensor) -> torch.Tensor:
    """The probability-flow ODE keeps x / std_t constant for Gaussian data: x_0 = S x_T / std_T."""
    a = acp[-1].double()
    return S * x_t / (a * S**2 + 1 - a).sqrt()


def _dpm_error(steps: int, x: torch.Tensor, acp: torch.Tensor) -> float:
    out = dpm_solver_pp_2m(_exact_x0(acp), x, acp, steps)
    ref = _ode_solution(x, acp)
    return float((out - ref).abs().max() / ref.abs().max())


def _ddim_error(steps: int, x: torch.Tensor, acp: torch.Tensor) -> float:
    sched = DDIMScheduler(num_train_timesteps=1000, schedule="scaled_linear_beta", beta_start=0.0015,
                          beta_end=0.0195, prediction_type="sample", clip_sample=False)
    sched.set_timesteps(num_inference_steps=steps)
    z, f = x.clone(), _exact_x0(acp)
    for t in sched.timesteps:
        z, _ = sched.step(f(z, int(t)), int(t), z)
    ref = _ode_solution(x, acp)
    return float((z - ref).abs().max() / ref.abs().max())


def test_timesteps_descend_evenly_from_the_last():
    assert dpm_timesteps(1000, 4) == [999, 444, 111, 0]
    ts = dpm_timesteps(1000, 50)
    assert len(set(ts)) == 50 and ts == sorted(ts, reverse=True) and ts[0] == 999 and ts[-1] == 0
    assert dpm_timesteps(1000, 1) == [999]
    with pytest.raises(ValueError, match="at least 1"):
        dpm_timesteps(1000, 0)


def test_dpm_solver_converges_to_the_ode_solution_and_beats_ddim_at_few_steps():
    acp = _schedule()
    x = torch.randn(1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    errors = [_dpm_error(n, x, acp) for n in (10, 15, 20, 50)]
    assert errors == sorted(errors, reverse=True) and errors[1] < 0.01 and errors[-1] < 1e-3
    for n in (10, 15, 20):
        assert _dpm_error(n, x, acp) < _ddim_error(n, x, acp) / 5


def test_progress_is_reported_per_model_call():
    acp, calls, seen = _schedule(), [], []
    def f(x, t):
        calls.append(t)
        return x * 0.0
    dpm_solver_pp_2m(f, torch.ones(3), acp, 5, progress=lambda d, n: seen.append((d, n)))
    assert calls == dpm_timesteps(1000, 5) and seen[-1] == (5, 5) and len(seen) == 5
