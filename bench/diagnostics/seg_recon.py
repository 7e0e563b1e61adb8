"""Dice of a segmentation autoencoder alone, decoded as generation decodes: scores a training run's
``seg_ae`` before a generator exists, and how fragile its decoding is when the latent is moved
(``bench/seg_ae.py``; figures in checkpoints/default/notes.md)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from diagnostics.codebook import perturb_latent
from vctcore.devices import autocast
from vctcore.generator import DECODE_ROI
from vctcore.label_islands import fragments, remove_small_islands
from vctcore.models.autoencoders import snap
from vctcore.models.encode import encode_segmentation
from vctcore.models.windowed import windowed
from vctcore.overlap import cohort_dice, dice_per_class


@torch.no_grad()
def segmentation_reconstruction_dice(seg_ae, labels: Iterable[np.ndarray], device: torch.device,
                                     precision: str = "bf16", latents: list[torch.Tensor] | None = None,
                                     noise_sds: Sequence[float] = (), seed: int = 0, min_island_voxels: int = 0) -> dict:
    """Dice of the segmentation autoencoder ``seg_ae`` alone (a vctcore ``SegAE``) on merged-class maps
    (X, Y, Z): each encoded whole and decoded in the generator's windows, as generation decodes Z_seg.

    Returns :func:`vctcore.overlap.cohort_dice` of the maps ("mean" over the 16 organ classes,
    "per_class"), plus "fragments" and "fragments_truth": connected components per patient of the
    decoded and of the true maps (:func:`vctcore.label_islands.fragments`), and "latent_noise": for
    each level in ``noise_sds``, the same encoding decoded after :func:`diagnostics.codebook.perturb_latent`
    moved it by that many SDs (patient ``i`` drawn from ``seed + i``), keyed ``f"{level:g}"`` with its
    "mean" Dice and "fragments": how precisely a diffusion sample must land on the codes. With
    ``min_island_voxels``, also "cleaned": the plain reconstruction's "mean", "per_class" and "fragments"
    after :func:`vctcore.label_islands.remove_small_islands`, as generation decodes with
    ``seg_min_island_ml``. Scores a training run's segmentation AE before a generator exists
    (``bench/seg_ae.py``).
    """
    was_training = seg_ae.training
    seg_ae.eval()
    levels = [0.0, *noise_sds]  # 0: the plain reconstruction
    per: list[list[dict]] = [[] for _ in levels]
    frags: list[list[int]] = [[] for _ in levels]
    frags_truth = []
    cleaned: list[dict] = []
    cleaned_frags: list[int] = []
    for i, lab in enumerate(labels):
        lab = np.asarray(lab)
        s = torch.from_numpy(lab.astype(np.int64))[None].to(device)
        with autocast(device, precision):
            z = encode_segmentation(seg_ae, s)
        if latents is not None:  # windowed encoding blends codes where windows overlap: snap them
            latents.append(snap(seg_ae.vq, seg_ae.unpack(z).float())[0].cpu())
        for j, level in enumerate(levels):
            with autocast(device, precision):
                logits = windowed(seg_ae.decode, perturb_latent(z, level, seed + i), DECODE_ROI)
            pred = logits[0].float().argmax(0).to(torch.uint8).cpu().numpy()
            per[j].append(dice_per_class(lab, pred))
            frags[j].append(fragments(pred))
            if j == 0 and min_island_voxels > 1:
                kept, _ = remove_small_islands(pred, min_island_voxels)
                cleaned.append(dice_per_class(lab, kept))
                cleaned_frags.append(fragments(kept))
        frags_truth.append(fragments(lab))
    seg_ae.train(was_training)
    noisy = {f"{level:g}": {"mean": cohort_dice(p)["mean"], "fragments": float(np.mean(f))}
             for level, p, f in zip(levels[1:], per[1:], frags[1:])}
    out = {**cohort_dice(per[0]), "fragments": float(np.mean(frags[0])),
           "fragments_truth": float(np.mean(frags_truth)), "latent_noise": noisy}
    if cleaned:
        out["cleaned"] = {**cohort_dice(cleaned), "fragments": float(np.mean(cleaned_frags))}
    return out
