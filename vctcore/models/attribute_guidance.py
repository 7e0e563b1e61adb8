"""Continuous attribute guidance: steer sampling toward body-composition (and weight) values.

The diffusion U-Net reads sex, age, height and weight as 10-year / 10-cm / 10-kg bins. Finer values,
and body fat % and muscle % which the bins do not carry, are reached at sampling time instead: a small
regressor reads the attributes off a normalised joint latent (it is trained on the latents of real
patients and on the U-Net's clean-latent estimates from their noised latents, so it reads the blurred
estimates of the noisy steps too), and at the solver's noisier steps the clean-latent estimate is moved
by the smallest change (Gauss-Newton, in normalised-latent units) that makes the regressor read the
requested values. The later, unsteered steps then denoise from there, so the sample stays on the data
the U-Net knows. This is "classifier guidance" in the data-prediction form (Dhariwal & Nichol 2021;
Chung et al. 2023, DPS), with a minimum-norm step instead of a fixed-scale gradient so that one strength
fits attributes with different units.

Tensors: latents (B, C, X, Y, Z) normalised as the diffusion's; attribute values in the schema's units
(``bfp_pct`` %, ``mmp_pct`` %, ``weight_kg`` kg).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class GuidanceConfig:
    """``attributes`` the regressor reads (schema names, in its output order); ``width`` its first
    convolution's channels; ``strength`` the fraction of the Gauss-Newton step taken at each steered
    solver step; ``min_timestep`` the smallest timestep steered (the last, low-noise steps only denoise);
    ``iterations`` Gauss-Newton iterations per steered step."""

    attributes: tuple[str, ...] = ("bfp_pct", "mmp_pct", "weight_kg")
    width: int = 32
    strength: float = 1.0
    min_timestep: int = 100
    iterations: int = 1
    coarse: int = 1

    @classmethod
    def from_dict(cls, d: dict) -> "GuidanceConfig":
        known = set(cls.__dataclass_fields__)
        bad = sorted(set(d) - known)
        if bad:
            raise ValueError(f"unknown guidance key(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
        out = dict(d)
        if "attributes" in out:
            out["attributes"] = tuple(out["attributes"])
        cfg = cls(**out)
        if not cfg.attributes or cfg.strength <= 0 or cfg.iterations < 1 or cfg.width < 8:
            raise ValueError("guidance needs at least one attribute, strength > 0, iterations >= 1 and width >= 8")
        return cfg

    def to_dict(self) -> dict:
        return {"attributes": list(self.attributes), "width": self.width, "strength": self.strength,
                "min_timestep": self.min_timestep, "iterations": self.iterations, "coarse": self.coarse}


class LatentRegressor(nn.Module):
    """Normalised joint latent (B, C, X, Y, Z) -> attribute values (B, K) in their units.

    Three 3x3x3 convolution blocks of stride 2 (GroupNorm, SiLU), a global average and a linear
    head: the attributes are whole-body totals and ratios, so the features are pooled over the body.
    ``mean``/``std`` (buffers) map the head's standardised output to units."""

    def __init__(self, cfg: GuidanceConfig, latent_channels: int) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width

        def block(i: int, o: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv3d(i, o, 3, stride=stride, padding=1), nn.GroupNorm(8, o), nn.SiLU())

        self.body = nn.Sequential(block(latent_channels, w, 2), block(w, 2 * w, 2), block(2 * w, 2 * w, 2))
        self.head = nn.Linear(2 * w, len(cfg.attributes))
        self.register_buffer("mean", torch.zeros(len(cfg.attributes)))
        self.register_buffer("std", torch.ones(len(cfg.attributes)))

    def standardised(self, z: torch.Tensor) -> torch.Tensor:
        """(B, K) predictions in standard units ((value - mean) / std)."""
        return self.head(self.body(z).mean(dim=(2, 3, 4)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.standardised(z) * self.std + self.mean


def target_matrix(regressor: LatentRegressor, rows: Sequence[dict]) -> torch.Tensor:
    """(B, K) standardised targets from attribute dicts; NaN where a row does not ask for an attribute."""
    vals = np.full((len(rows), len(regressor.cfg.attributes)), np.nan, dtype=np.float32)
    for b, row in enumerate(rows):
        for k, name in enumerate(regressor.cfg.attributes):
            v = row.get(name)
            if v is not None and not (isinstance(v, float) and np.isnan(v)):
                vals[b, k] = float(v)
    t = torch.from_numpy(vals)
    return (t - regressor.mean.cpu()) / regressor.std.cpu()


def gauss_newton_step(regressor: LatentRegressor, x0: torch.Tensor, targets: torch.Tensor,
                      damping: float = 1e-3, coarse: int = 1) -> torch.Tensor:
    """The smallest change d of ``x0`` (B, C, X, Y, Z) with J d = targets - r(x0) to first order, per
    sample, over the attributes a sample asks for (non-NaN ``targets`` (B, K), standardised); zero
    where a sample asks for none. J is the regressor's Jacobian (K rows, one backward pass each);
    ``damping`` is relative to the mean of J J^T's diagonal (Levenberg-Marquardt)."""
    x = x0.detach().float().requires_grad_(True)
    with torch.enable_grad():
        pred = regressor.standardised(x)  # (B, K); samples are independent (GroupNorm is per sample)
        rows = [torch.autograd.grad(pred[:, k].sum(), x, retain_graph=k < pred.shape[1] - 1)[0]
                for k in range(pred.shape[1])]
    jac = torch.stack(rows, dim=1)  # (B, K, C, X, Y, Z)
    shape = x.shape
    if coarse > 1:  # the change held constant over coarse^3 blocks: J with respect to the block values
        b_, k_ = jac.shape[:2]
        jac = nn.functional.avg_pool3d(jac.flatten(0, 1), coarse, ceil_mode=True) * coarse**3
        jac = jac.view(b_, k_, *jac.shape[1:])
        shape = (shape[0], *jac.shape[2:])
    jac = jac.flatten(2)  # (B, K, D)
    step = torch.zeros(shape, dtype=x.dtype, device=x.device).flatten(1)
    tgt = targets.to(x.device)
    for b in range(x.shape[0]):
        ask = ~torch.isnan(tgt[b])
        if not bool(ask.any()):
            continue
        j = jac[b, ask]  # (k, D)
        err = tgt[b, ask] - pred[b, ask].detach()
        gram = j @ j.T
        gram = gram + damping * gram.diagonal().mean() * torch.eye(j.shape[0], device=j.device)
        step[b] = j.T @ torch.linalg.solve(gram, err)
    step = step.view(shape)
    if coarse > 1:
        step = step.repeat_interleave(coarse, 2).repeat_interleave(coarse, 3).repeat_interleave(coarse, 4)
        step = step[:, :, :x.shape[2], :x.shape[3], :x.shape[4]]
    return step.to(x0.dtype)


def make_steer(regressor: LatentRegressor, targets: torch.Tensor) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """``steer(x0, t)`` for the sampler: the clean-latent estimate moved toward ``targets`` at timesteps
    of at least ``cfg.min_timestep``, ``cfg.iterations`` Gauss-Newton steps of ``cfg.strength``; returned
    unchanged below that."""
    cfg = regressor.cfg

    def steer(x0: torch.Tensor, t: int) -> torch.Tensor:
        if t < cfg.min_timestep:
            return x0
        for _ in range(cfg.iterations):
            x0 = x0 + cfg.strength * gauss_newton_step(regressor, x0, targets, coarse=cfg.coarse)
        return x0

    return steer
