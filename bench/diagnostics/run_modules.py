"""A training run's networks as the generator would use them, before the run is exported: for scoring
a diffusion while it trains, or before the post-processor exists (``bench/diffusion_loss.py --run``)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from vctcore.models.autoencoders import SegAE, StackedImageAE
from vctcore.models.checkpoint import load_module, load_state
from vctcore.models.config import GeneratorConfig
from vctcore.models.diffusion import LatentDiffusion
from vctcore.train.stages import image_ae_from_run, tuned_seg_ae_file, tuned_seg_ae_from_run


@dataclass
class GeneratorModules:
    """What the loss reads of a generator, for a training run that has no exported generator yet."""

    cfg: GeneratorConfig
    ae: StackedImageAE
    seg_ae: SegAE
    dm: LatentDiffusion
    device: torch.device


def load_run_modules(run_dir: str | Path, device: torch.device) -> tuple[GeneratorModules, int | None]:
    """The image AE, the segmentation AE (the ``seg_decoder`` stage's when the run has it) and the
    diffusion of the run at ``run_dir``, eval mode on ``device``. The diffusion is the finished stage's, or
    the EMA weights of its resumable state while it still trains; the second value is then that state's
    step (None for a finished stage). ValueError naming what is missing."""
    run = Path(run_dir)
    meta = run / "run.json"
    if not meta.exists():
        raise ValueError(f"{run}: not a training run (no run.json)")
    cfg = GeneratorConfig.from_dict(json.loads(meta.read_text())["config"])
    models = run / "models"
    for i in range(len(cfg.image_ae.levels)):
        name = f"image_ae_{i + 1}.safetensors"
        if not (models / name).exists():
            raise ValueError(f"{run}: the image autoencoder's level {i + 1} is not trained yet ({name})")
    seg_file = tuned_seg_ae_file(models)
    if not seg_file.exists():
        raise ValueError(f"{run}: the segmentation autoencoder is not trained yet ({seg_file.name})")
    ae, seg_ae = image_ae_from_run(models, cfg), tuned_seg_ae_from_run(models, cfg)
    dm = LatentDiffusion(cfg.diffusion, cfg.latent_channels)
    step = None
    if (models / "diffusion.safetensors").exists():
        load_module(dm, models / "diffusion.safetensors", kind="diffusion")
    elif (run / "state" / "diffusion.pt").exists():
        state = load_state(run / "state" / "diffusion.pt")
        dm.load_state_dict(state["modules"]["ema"])
        step = int(state["step"])
    else:
        raise ValueError(f"{run}: no diffusion yet (neither models/diffusion.safetensors nor state/diffusion.pt)")
    mods = GeneratorModules(cfg, ae.to(device).eval(), seg_ae.to(device).eval(), dm.to(device).eval(), device)
    return mods, step
