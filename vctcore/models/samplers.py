"""DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++: fast solver for guided sampling of diffusion
probabilistic models", Algorithm 2): a second-order multistep solver of the diffusion ODE in its
data-prediction form, deterministic like DDIM (eta = 0) but about as faithful at 15-20 steps as DDIM at
50 (measured on the default generator, see its notes.md).

Written here because MONAI's schedulers (DDPM, DDIM, PNDM, RFlow) have no DPM-Solver, and diffusers'
would bring its hub-oriented package into the app for the 30 lines below. The discretisation follows
``steps`` model calls at timesteps from T-1 down to 0 (as MONAI's DDIM ends at 0), quadratic in time,
each moving to the next one by the 2M update (the first by the first-order one), and the last call's
clean estimate is the sample. On Gaussian data (exact denoiser, this schedule, 15 steps) the result is
0.7 % from the ODE's solution with this spacing, 1.5 % evenly spaced in log-SNR, 13 % evenly spaced in
time (the large log-SNR jump of the last steps defeats the second-order term), and 9-13 % for the
first-order update (DDIM) with any of them (tests/test_samplers.py).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

def dpm_timesteps(train_timesteps: int, steps: int) -> list[int]:
    """``steps`` distinct descending integer timesteps from ``train_timesteps - 1`` to 0, quadratic in time
    (evenly spaced in sqrt(t), the DDIM paper's "quadratic" spacing: denser at low noise); one step:
    ``train_timesteps - 1`` alone."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if steps > train_timesteps:
        raise ValueError(f"steps must be at most {train_timesteps} (the training timesteps), got {steps}")
    if steps == 1:
        return [train_timesteps - 1]
    ts = [int(t) for t in (np.linspace(np.sqrt(train_timesteps - 1), 0.0, steps) ** 2).round()]
    for i in range(steps - 2, -1, -1):  # rounding may merge the smallest ones: keep them distinct
        ts[i] = max(ts[i], ts[i + 1] + 1)
    return ts


def dpm_solver_pp_2m(predict_x0: Callable[[torch.Tensor, int], torch.Tensor], x: torch.Tensor,
                     alphas_cumprod: torch.Tensor, steps: int,
                     progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Clean sample from the initial noise ``x`` (any shape).

    ``predict_x0(x_t, t)`` returns the model's estimate of the clean sample at integer timestep ``t``
    (guidance already applied); ``alphas_cumprod`` (T,) is the training schedule's cumulative alpha bar.
    """
    acp = alphas_cumprod.double().cpu()
    ts = dpm_timesteps(len(acp), steps)
    alpha = [float(acp[t].sqrt()) for t in ts]
    sigma = [float((1 - acp[t]).sqrt()) for t in ts]
    lam = [float(np.log(a / s)) for a, s in zip(alpha, sigma)]
    x0_prev, h_prev = None, None
    for i, t in enumerate(ts):
        x0 = predict_x0(x, t)
        last = i == len(ts) - 1
        if last:  # to sigma = 0: the clean estimate itself (first order, as lower_order_final asks)
            x = x0
        else:
            h = lam[i + 1] - lam[i]
            if x0_prev is None:  # the first step has no history: first order (DDIM's update)
                d = x0
            else:
                r = h_prev / h
                d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
            x = (sigma[i + 1] / sigma[i]) * x - alpha[i + 1] * float(np.expm1(-h)) * d
            x0_prev, h_prev = x0, h
        if progress is not None:
            progress(i + 1, len(ts))
    return x
