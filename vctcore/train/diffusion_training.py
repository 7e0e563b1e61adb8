"""The diffusion stage's training step (:func:`vctcore.train.stages.train_diffusion`, from scratch or trained
on from a generator) and its held-out loss (:mod:`vctcore.train.held_out`): the v/eps loss on normalised
latents with condition dropout, the EMA, latent batches and the per-step noise generator."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vctcore.models.conditioning import drop_conditions
from vctcore.models.config import StageSchedule
from vctcore.models.diffusion import LatentDiffusion
from vctcore.train.loop import warmup_cosine_lr


def diffusion_loss(model: nn.Module, sched, cfg, z0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
                   bins: torch.Tensor, autocast: Callable) -> torch.Tensor:
    """MSE of the U-Net's prediction (velocity or noise, per ``cfg.prediction_type``) for the normalised
    latents ``z0`` (B, C, X, Y, Z) noised with ``noise`` at timesteps ``t`` (B,) under ``bins`` (B, K)."""
    zt = sched.add_noise(z0, noise, t)
    target = sched.get_velocity(z0, noise, t) if cfg.prediction_type == "v_prediction" else noise
    with autocast():
        pred = model(zt, t, bins)
    return F.mse_loss(pred.float(), target)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema`` <- decay * ``ema`` + (1 - decay) * ``model``, parameter by parameter."""
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1 - decay)


def latent_batches(z_all: np.ndarray, device: torch.device,
                   max_fraction: float = 0.25) -> Callable[[np.ndarray], torch.Tensor]:
    """A function from sorted patient indices to their float32 latents on ``device``, (B, C, X, Y, Z).

    On a CUDA device, latents taking at most ``max_fraction`` of its free memory are copied there once
    (the ``cpu`` preset's 320 patients: 1.3 GB), so a step reads no memory map; otherwise each batch is
    read from ``z_all`` (memory-mapped) and copied."""
    if device.type == "cuda" and len(z_all):
        free, _ = torch.cuda.mem_get_info(device)
        if z_all.nbytes <= max_fraction * free:
            on_device = torch.from_numpy(np.ascontiguousarray(z_all)).to(device)
            return lambda idx: on_device[torch.from_numpy(idx).to(device)]
    return lambda idx: torch.from_numpy(np.array(z_all[idx])).to(device)


def noise_generator(device: torch.device, seed: int) -> torch.Generator | None:
    """The diffusion's noise and timestep generator on a CUDA ``device`` (None on CPU, where they are
    drawn from the CPU generator as before; see :func:`diffusion_step`)."""
    return torch.Generator(device=device).manual_seed(seed) if device.type == "cuda" else None


def diffusion_step(dm: LatentDiffusion, model: nn.Module, ema: nn.Module, opt: torch.optim.Optimizer,
                   sch: StageSchedule | Callable[[], StageSchedule], z_all: np.ndarray, bins_all: torch.Tensor,
                   rng: np.random.Generator,
                   gen: torch.Generator, device: torch.device, autocast: Callable, *, ema_decay: float = 0.995,
                   ema_warmup: bool = True, noise_gen: torch.Generator | None = None) -> Callable[[int], dict[str, float]]:
    """One training step of the diffusion U-Net ``dm`` (through ``model``, its DDP wrapper or itself) on a
    batch of latents drawn from ``z_all`` (N, C, X, Y, Z) with conditioning ``bins_all`` (N, K): warm-up +
    cosine learning rate, condition dropout, gradient clipping, and the EMA ``ema`` (its decay warmed up
    from 0.1 when ``ema_warmup``, for a U-Net trained from scratch). ``sch`` may be a function returning
    the schedule (read at every step: a time budget may shorten the stage, and its cosine, mid-run).

    Noise and timesteps come from ``noise_gen`` (on its own device) when given, else from ``gen`` on the
    CPU. On a GPU, drawing them on the CPU makes the step CPU-bound (see checkpoints/default/notes.md);
    latents that fit are then also held on the device (:func:`latent_batches`)."""
    cfg = dm.cfg
    sched = dm.train_scheduler()
    schedule = sch if callable(sch) else (lambda: sch)
    batch_of = latent_batches(z_all, device)

    def step(i: int) -> dict[str, float]:
        sch = schedule()
        idx = np.sort(rng.integers(len(z_all), size=sch.batch_size))
        z0 = dm.normalise(batch_of(idx))
        bins = drop_conditions(bins_all[idx], cfg.condition_dropout, cfg.attribute_dropout, gen).to(device)
        if noise_gen is None:
            noise = torch.randn(z0.shape, generator=gen).to(device)
            t = torch.randint(0, cfg.train_timesteps, (z0.shape[0],), generator=gen).to(device)
        else:
            noise = torch.randn(z0.shape, generator=noise_gen, device=noise_gen.device).to(device)
            t = torch.randint(0, cfg.train_timesteps, (z0.shape[0],), generator=noise_gen,
                              device=noise_gen.device).to(device)
        for g in opt.param_groups:
            g["lr"] = warmup_cosine_lr(sch, i)
        loss = diffusion_loss(model, sched, cfg, z0, noise, t, bins, autocast)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(dm.parameters(), 1.0)
        opt.step()
        ema_update(ema, dm, min(ema_decay, (1 + i) / (10 + i)) if ema_warmup else ema_decay)
        return {"loss": loss.item(), "lr": opt.param_groups[0]["lr"]}

    return step


