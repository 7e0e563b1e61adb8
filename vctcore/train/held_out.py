"""The held-out figures of a stage trained on from a generator (:mod:`vctcore.train.train_on`), each computed
on the first patients, which the stage's training never sees, the same way before and after training, and
what the stage runners call for it (:func:`start_from_generator`, :func:`held_out_check`)."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from vctcore.models.autoencoders import SegAE
from vctcore.models.checkpoint import load_module
from vctcore.train.data import CohortArrays
from vctcore.train.diffusion_training import diffusion_loss
from vctcore.train.loop import StageResult

if TYPE_CHECKING:
    from vctcore.train.stages import StageContext

#: draws of (noise, timestep) per held-out patient in the diffusion's held-out loss
VAL_DRAWS = 4
#: per stage trained on, the held-out figure's name
FIGURES = {"diffusion": "val_loss", "seg_decoder": "val_dice"}
#: ``<run>/held_out.json``: each stage's held-out figure before and after
HELD_OUT = "held_out.json"


def start_from_generator(ctx: StageContext, stage: str, module: nn.Module, kind: str) -> None:
    """Load the generator's weights of ``stage`` (its stage file in the run's ``from_generator`` folder,
    buffers included) into ``module``, strictly; a resumed stage then loads its own state over them."""
    load_module(module, ctx.warm_from / "models" / f"{stage}.safetensors", kind=kind)


def held_out_check(ctx: StageContext, stage: str, figure: Callable[[], float]) -> Callable[[StageResult], None]:
    """Record ``figure()`` (the stage's held-out figure of the modules as they are now) as ``before`` in
    ``<run>/held_out.json``, once: a resumed run keeps the first value. Returns the function to call with
    the stage's result, which records ``after`` when the stage finished."""
    path = ctx.run_dir / HELD_OUT

    def put(key: str, value: float) -> None:
        record = json.loads(path.read_text()) if path.exists() else {}
        record.setdefault(stage, {"figure": FIGURES[stage]})[key] = value
        path.write_text(json.dumps(record, indent=2))

    if "before" not in read_held_out(ctx.run_dir).get(stage, {}) and ctx.rank == 0:
        put("before", figure())

    def finish(result: StageResult) -> None:
        if result.finished and ctx.rank == 0:
            put("after", figure())

    return finish


def read_held_out(run_dir: Path) -> dict[str, dict]:
    """``<run>/held_out.json``: stage -> {"figure", "before", "after"} (as far as recorded); {} for none."""
    path = Path(run_dir) / HELD_OUT
    return json.loads(path.read_text()) if path.exists() else {}


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
