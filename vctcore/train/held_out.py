"""The held-out figures of a stage trained on from a generator (:mod:`vctcore.train.train_on`), each computed
on the first patients, which the stage's training never sees, the same way before and after training."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from vctcore.models.autoencoders import SegAE
from vctcore.train.data import CohortArrays
from vctcore.train.diffusion_training import diffusion_loss

#: draws of (noise, timestep) per held-out patient in the diffusion's held-out loss
VAL_DRAWS = 4


def diffusion_loss_figure(model: nn.Module, z: np.ndarray, bins: torch.Tensor, seed: int, batch_size: int,
                          device: torch.device, autocast: Callable) -> Callable[[], float]:
    """A function giving the diffusion ``model``'s mean training loss (:func:`diffusion_loss`) on the held-out
    latents ``z`` (N, C, X, Y, Z; unnormalised) under their conditioning ``bins`` (N, K, none dropped), each
    with :data:`VAL_DRAWS` fixed draws of noise and of timesteps spread evenly over the schedule (drawn once
    from ``seed``, so every call sees the same ones)."""
    g = torch.Generator().manual_seed(seed)
    z_val = torch.from_numpy(np.array(z)).repeat(VAL_DRAWS, 1, 1, 1, 1)
    b_val = bins.repeat(VAL_DRAWS, 1)
    n = len(z_val)
    noise = torch.randn(z_val.shape, generator=g)
    t = (torch.randperm(n, generator=g) * model.cfg.train_timesteps // n).long()
    sched = model.train_scheduler()

    @torch.no_grad()
    def figure() -> float:
        was = model.training
        model.eval()
        total = 0.0
        for i in range(0, n, batch_size):
            sl = slice(i, i + batch_size)
            z0 = model.normalise(z_val[sl].to(device))
            loss = diffusion_loss(model, sched, model.cfg, z0, noise[sl].to(device), t[sl].to(device),
                                  b_val[sl].to(device), autocast)
            total += float(loss) * len(z0)
        model.train(was)
        return total / n

    return figure


def seg_decoder_dice_figure(seg_ae: SegAE, decoder: nn.Module, data: CohortArrays, n: int, device: torch.device,
                            autocast: Callable) -> Callable[[], float]:
    """A function giving the mean Dice of the 16 organ classes (:func:`vctcore.overlap.cohort_dice`) of the
    first ``n`` patients' segmentations, each encoded whole with the frozen ``seg_ae`` and decoded with
    ``decoder`` in the generator's windows, against the labels."""
    from vctcore.generator import DECODE_ROI
    from vctcore.models.encode import encode_segmentation
    from vctcore.models.windowed import windowed
    from vctcore.overlap import cohort_dice, dice_per_class

    @torch.no_grad()
    def figure() -> float:
        was = decoder.training
        decoder.eval()
        per = []
        for i in range(n):
            labels = np.asarray(data.seg[i])
            seg = torch.from_numpy(labels.astype(np.int64))[None].to(device)
            z = encode_segmentation(seg_ae, seg).float()  # as the latents stage encodes: no autocast
            with autocast():
                logits = windowed(lambda zz: decoder(seg_ae.unpack(zz)), z, DECODE_ROI).float()
            per.append(dice_per_class(labels, logits[0].argmax(0).to(torch.uint8).cpu().numpy()))
        decoder.train(was)
        return float(cohort_dice(per)["mean"])

    return figure
