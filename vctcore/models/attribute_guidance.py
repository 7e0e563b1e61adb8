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

Two read-outs are here. :class:`LatentRegressor` (a small CNN) is the first; its gradient steps fool it:
the regressor reads the target while the measured body moves little or the wrong way. :class:`LinearGuide`
is the second: per solver timestep, a ridge regression from the clean-latent estimate to what the *final*
image measures, fitted on the generator's own sampling trajectories (``bench/composition_guidance.py
collect``). Its rows lie in the span of the training estimates, so its minimum-norm step is a change
the data shows (more fat, more muscle), not an adversarial pattern. Notes: ``checkpoints/default/notes.md``.

Tensors: latents (B, C, X, Y, Z) normalised as the diffusion's; attribute values in the schema's units
(``bfp_pct`` %, ``mmp_pct`` %, ``weight_kg`` kg).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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


def attribute_values(attributes: Sequence[str], rows: Sequence[dict]) -> torch.Tensor:
    """(B, K) float32 values of ``attributes`` from attribute dicts, in their units; NaN where a row does not
    ask for one (missing, None or not finite)."""
    vals = np.full((len(rows), len(attributes)), np.nan, dtype=np.float32)
    for b, row in enumerate(rows):
        for k, name in enumerate(attributes):
            v = row.get(name)
            if v is not None and np.isfinite(float(v)):
                vals[b, k] = float(v)
    return torch.from_numpy(vals)


def target_matrix(regressor: LatentRegressor, rows: Sequence[dict]) -> torch.Tensor:
    """(B, K) standardised targets from attribute dicts; NaN where a row does not ask for an attribute."""
    return (attribute_values(regressor.cfg.attributes, rows) - regressor.mean.cpu()) / regressor.std.cpu()


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


@dataclass
class LinearGuide:
    """Linear read-outs of the final image's measured attributes from a solver step's clean-latent estimate.

    ``maps[t] = (W, c)``: at timestep ``t`` the reading of a normalised clean-latent estimate ``x``
    (C, X, Y, Z), flattened, is ``W @ x + c``; ``W`` (K, D), ``c`` (K,), K = ``len(attributes)``, in the
    attributes' units. Steps without a map are not steered. ``meta``: provenance (calibration, data)."""

    attributes: tuple[str, ...]
    maps: dict[int, tuple[torch.Tensor, torch.Tensor]]
    meta: dict = field(default_factory=dict)

    @classmethod
    def fit(cls, attributes: Sequence[str], estimates: dict[int, np.ndarray], measured: np.ndarray,
            ridge: float = 1e3) -> "LinearGuide":
        """Ridge regression per timestep (scikit-learn's, solved in the dual since N << D): ``estimates[t]``
        (N, C, X, Y, Z) the clean-latent estimates of N trajectories at ``t``, ``measured`` (N, K) what
        their final images measured. Rows with a non-finite measurement are left out."""
        from sklearn.linear_model import Ridge

        y = np.asarray(measured, dtype=np.float64)
        ok = np.isfinite(y).all(axis=1)
        if ok.sum() < 2:
            raise ValueError("a linear guide needs at least 2 trajectories with every attribute measured")
        maps = {}
        for t, x in estimates.items():
            flat = np.asarray(x, dtype=np.float32).reshape(len(x), -1)[ok]
            model = Ridge(alpha=ridge).fit(flat, y[ok])
            maps[int(t)] = (torch.from_numpy(model.coef_.astype(np.float32)),
                            torch.from_numpy(np.asarray(model.intercept_, dtype=np.float32)))
        return cls(tuple(attributes), maps, {"ridge": ridge, "n_trajectories": int(ok.sum())})

    def map_for(self, t: int) -> int | None:
        """The mapped timestep that serves timestep ``t``: ``t`` itself, else the nearest mapped one within
        half the widest gap between mapped timesteps (so other step counts are steered over the same noise
        band), else None."""
        ts = sorted(self.maps)
        if int(t) in self.maps:
            return int(t)
        tol = max(np.diff(ts).max() / 2 if len(ts) > 1 else 0, 1)
        near = min(ts, key=lambda m: abs(m - int(t)))
        return near if abs(near - int(t)) <= tol else None

    def _map_on(self, t: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(W, c) serving timestep ``t`` (:meth:`map_for`) in float32 on ``device``, or None."""
        tm = self.map_for(t)
        return None if tm is None else tuple(a.to(device).float() for a in self.maps[tm])

    def read(self, x0: torch.Tensor, t: int) -> torch.Tensor:
        """(B, K) readings of clean-latent estimates ``x0`` (B, C, X, Y, Z) at timestep ``t`` (see :meth:`map_for`)."""
        w, c = self._map_on(t, x0.device)
        return x0.flatten(1).float() @ w.T + c

    def step(self, x0: torch.Tensor, t: int, targets: torch.Tensor) -> torch.Tensor:
        """The smallest change of ``x0`` (B, C, X, Y, Z) that makes the reading at ``t`` equal ``targets``
        (B, K) in units; NaN targets are free. Zero where ``t`` has no map or a sample asks for nothing."""
        step = torch.zeros(x0.shape[0], x0[0].numel(), device=x0.device)
        wc = self._map_on(t, x0.device)
        if wc is None:
            return step.view_as(x0).to(x0.dtype)
        w, c = wc
        targets = targets.to(x0.device)
        err = targets.float() - (x0.flatten(1).float() @ w.T + c)
        for b in range(x0.shape[0]):
            ask = ~torch.isnan(targets[b])
            if bool(ask.any()):
                wb = w[ask]
                step[b] = wb.T @ torch.linalg.solve(wb @ wb.T, err[b, ask])
        return step.view_as(x0).to(x0.dtype)

    def targets(self, rows: Sequence[dict]) -> torch.Tensor:
        """(B, K) targets in units from attribute dicts; NaN where a row does not ask for an attribute."""
        return attribute_values(self.attributes, rows)

    def make_steer(self, targets: torch.Tensor, strength: float = 1.0) -> Callable[[torch.Tensor, int], torch.Tensor]:
        """``steer(x0, t)`` for :meth:`LatentDiffusion.sample`: ``strength`` times :meth:`step` at mapped steps."""

        def steer(x0: torch.Tensor, t: int) -> torch.Tensor:
            if self.map_for(t) is None:
                return x0
            return x0 + strength * self.step(x0, t, targets)

        return steer

    def save(self, path: str | Path) -> None:
        """Write the guide as safetensors (``W`` in float16, ``c`` in float32; attributes and ``meta`` as JSON
        metadata)."""
        from safetensors.torch import save_file

        tensors = {}
        for t, (w, c) in self.maps.items():
            tensors[f"t{t}.w"] = w.to(torch.float16).contiguous()
            tensors[f"t{t}.c"] = c.float().contiguous()
        save_file(tensors, str(path), metadata={"attributes": json.dumps(list(self.attributes)),
                                                "meta": json.dumps(self.meta)})

    @classmethod
    def load(cls, path: str | Path) -> "LinearGuide":
        """A guide written by :meth:`save` (safetensors: nothing unpickled); ValueError naming the file when
        it is not one."""
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                md = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            attributes = tuple(json.loads(md["attributes"]))
            meta = json.loads(md.get("meta", "{}"))
            steps = sorted({int(k[1:].split(".")[0]) for k in tensors}, reverse=True)
            maps = {t: (tensors[f"t{t}.w"], tensors[f"t{t}.c"]) for t in steps}
        except Exception as err:  # a corrupt or foreign file: one line naming it
            raise ValueError(f"{path}: not a composition guide ({type(err).__name__}: {err})") from None
        if any(w.shape[0] != len(attributes) or c.shape != (len(attributes),) for w, c in maps.values()):
            raise ValueError(f"{path}: not a composition guide (map shapes disagree with its {len(attributes)} attributes)")
        return cls(attributes, maps, meta)
