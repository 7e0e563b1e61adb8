"""A generator checkpoint with random weights, written in about a second, for tests that need the
generator's real code paths (seeded noise, conditioning, decoding) but not trained images.

MONAI zero-initialises the last convolution of its residual blocks, of its attention blocks and of the U-Net,
so an untrained U-Net outputs zero whatever its conditioning; here those weights are random too, so that
changing an attribute changes the image.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from generator_fixtures import TINY_PRESET
from vctcore.models.autoencoders import SegAE, StackedImageAE
from vctcore.models.checkpoint import save_module, sha256_file
from vctcore.models.config import GeneratorConfig
from vctcore.models.diffusion import LatentDiffusion

#: a smaller grid than the tiny trained generator's (still at most 20 mm per voxel, which measurement allows)
GRID = (32, 24, 64)
SPACING_MM = (12.0, 12.0, 16.0)


def write_untrained_generator(out: Path, seed: int = 0) -> Path:
    """Write a loadable generator directory (config.json, manifest.json, weights; no post-processor)."""
    preset = copy.deepcopy(TINY_PRESET)
    preset.update(name="untrained", grid_shape=list(GRID), spacing_mm=list(SPACING_MM))
    preset["diffusion"]["sample_steps"] = 2
    cfg = GeneratorConfig.from_dict(preset)
    torch.manual_seed(seed)
    ae, seg_ae = StackedImageAE(cfg.image_ae), SegAE(cfg.seg_ae)
    dm = LatentDiffusion(cfg.diffusion, cfg.latent_channels)
    with torch.no_grad():
        for p in dm.parameters():
            if p.dim() > 1 and not p.any():
                p.normal_(0.0, 0.1)
    out.mkdir(parents=True, exist_ok=True)
    for module, kind in ((ae, "image_ae"), (seg_ae, "seg_ae"), (dm, "diffusion")):
        save_module(module, out / f"{kind}.safetensors", kind=kind, config=cfg.to_dict())
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    files = ("config.json", "image_ae.safetensors", "seg_ae.safetensors", "diffusion.safetensors")
    manifest = {"format": "vct-generator/1", "preset": cfg.name, "grid_shape": list(GRID),
                "spacing_mm": list(SPACING_MM),
                "training": {"n_patients": 0, "note": "untrained: random weights for tests"},
                "support": {}, "files": {f: sha256_file(out / f) for f in files}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out
