"""``vct train --warm-start``: a stage's module started from an earlier run's weights wherever they fit, the
joint-latent channels the two runs share, and the run's record of what each warm start kept.

Weights load where names and shapes fit (:func:`vctcore.models.checkpoint.load_matching`; new conditioning
attributes add only fresh embedding tables). When the joint latent changed, the diffusion U-Net's first and
last convolutions are grafted (``LatentDiffusion.graft_latent_channels``): channels an autoencoder of both runs
produces (:func:`shared_latent_channels`) keep their old input columns and output rows, new channels' input
columns start at zero. Autoencoders are "the same" when their tensors are
(:func:`vctcore.models.checkpoint.tensors_sha256`; safetensors headers are not byte-stable).
``<run>/warm_start.json`` records it; the exported manifest's ``training`` carries it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from vctcore.models.checkpoint import load_matching, read_tensors, tensors_sha256
from vctcore.models.config import GeneratorConfig
from vctcore.models.diffusion import UNET_IN_CONV, UNET_OUT_CONV, LatentDiffusion

if TYPE_CHECKING:
    from vctcore.train.stages import StageContext

#: ``<run>/warm_start.json``: per warm-started stage, the weights it started from, the tensors left fresh,
#: the grafted ones and the joint-latent channel pairs they kept
WARM_START_RECORD = "warm_start.json"


def warm_start(ctx: StageContext, stage: str, module: nn.Module, kind: str) -> None:
    """With ``vct train --from-run OLD --warm-start STAGE``: a stage retrained because its config changed
    (say, the diffusion now also reads BFP and MMP) starts from OLD's weights of that stage wherever
    names and shapes fit (:func:`load_matching`); a resumed stage then loads its own state over them.
    The old run's normalisation buffers must match (the same latents), so they are checked."""
    if ctx.warm_from is None or stage not in ctx.warm_stages:
        return
    before = {k: v.clone() for k, v in module.state_dict().items() if k.startswith("latent_")}
    path = ctx.warm_from / "models" / f"{stage}.safetensors"
    old_state = read_tensors(path, kind)[1]
    fresh = load_matching(module, path, kind=kind, state=old_state)
    for k, v in before.items():
        if not torch.allclose(module.state_dict()[k], v, rtol=1e-4, atol=1e-5):
            raise ValueError(f"--warm-start {stage}: {ctx.warm_from} normalised other latents ({k} differs)")
    grafted: list[str] = []
    pairs: list[tuple[int, int]] = []
    if isinstance(module, LatentDiffusion) and any(k.startswith((UNET_IN_CONV, UNET_OUT_CONV)) for k in fresh):
        # the joint latent changed: the U-Net's first and last convolutions keep the old weights of the
        # latent channels that mean what they meant (an autoencoder both runs share)
        pairs = shared_latent_channels(ctx.warm_from, ctx.run_dir)
        if pairs:
            grafted = module.graft_latent_channels(old_state, pairs)
    # the latent statistics are this run's own (computed from its latents), not fresh
    left = set(fresh) - set(grafted) - set(before)
    if ctx.rank == 0:  # provenance, copied into the exported generator's manifest
        record = read_warm_starts(ctx.run_dir)
        record[stage] = {"from": str(path.resolve()), "fresh_tensors": sorted(left), "grafted_tensors": grafted,
                         "latent_channel_pairs": [list(p) for p in pairs]}
        (ctx.run_dir / WARM_START_RECORD).write_text(json.dumps(record, indent=2))
    if ctx.progress is not None:
        ctx.progress(stage, 0, ctx.schedule(stage).steps, {"warm_fresh_tensors": float(len(left)),
                                                           "warm_grafted_tensors": float(len(grafted))})


def read_warm_starts(run_dir: Path) -> dict:
    """The run's warm-start record (:data:`WARM_START_RECORD`; empty when no stage warm-started)."""
    path = Path(run_dir) / WARM_START_RECORD
    return json.loads(path.read_text()) if path.exists() else {}


def shared_latent_channels(old_run: Path, new_run: Path) -> list[tuple[int, int]]:
    """``(old, new)`` joint-latent channel pairs that carry the same latent in two runs: the image channels
    (first in the joint latent) when every image AE level's weights are identical (tensor for tensor), the segmentation channels
    when the segmentation AE the latents were encoded with is. Empty when neither is shared."""
    cfgs = [GeneratorConfig.from_dict(json.loads((r / "run.json").read_text())["config"]) for r in (old_run, new_run)]
    imgs = [c.image_ae.levels[-1].embedding_dim for c in cfgs]
    pairs: list[tuple[int, int]] = []

    def same(files: list[tuple[Path, Path]]) -> bool:
        return all(a.exists() and b.exists() and tensors_sha256(a) == tensors_sha256(b) for a, b in files)

    levels = [f"image_ae_{i + 1}.safetensors" for i in range(len(cfgs[1].image_ae.levels))]
    if len(cfgs[0].image_ae.levels) == len(levels) and same([(old_run / "models" / f, new_run / "models" / f) for f in levels]):
        pairs += [(c, c) for c in range(imgs[1])]
    if same([(tuned_seg_ae_file(old_run / "models"), tuned_seg_ae_file(new_run / "models"))]):
        pairs += [(imgs[0] + c, imgs[1] + c) for c in range(cfgs[1].seg_ae.latent_channels)]
    return pairs


def tuned_seg_ae_file(models: Path) -> Path:
    """The segmentation AE weights in a run's ``models`` folder that the generator decodes with: the
    ``seg_decoder`` stage's fine-tuned decoder when the run has one, else the ``seg_ae`` stage's."""
    tuned = models / "seg_decoder.safetensors"
    return tuned if tuned.exists() else models / "seg_ae.safetensors"
