"""Autoencoder reconstruction quality (paper Tables A2-A3): encode a real patient to the joint latent,
decode it, and compare with the original.

PSNR and SSIM are computed over the whole (X, Y, Z) volume with HU clipped to ``HU_RANGE``
[-1000, 1000] (data range 2000 HU), SSIM in 3D with skimage's default 7-voxel window. Paper (stacked
VQ-VAE, 1.5 mm): PSNR 31.06 dB, SSIM 0.9472.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from vctcore.labels import MERGED_CLASSES
from vctcore.volume import CTVolume, LabelMap

HU_RANGE = (-1000.0, 1000.0)
PAPER = {"psnr_db": 31.06, "ssim": 0.9472}


def _clip(hu: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(hu, dtype=np.float32), *HU_RANGE)


def psnr_hu(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR (dB) of ``test`` against ``reference`` (HU, same shape) over HU_RANGE."""
    return float(peak_signal_noise_ratio(_clip(reference), _clip(test), data_range=HU_RANGE[1] - HU_RANGE[0]))


def ssim_hu(reference: np.ndarray, test: np.ndarray) -> float:
    """Mean SSIM of ``test`` against ``reference`` (HU, same shape, 2D or 3D) over HU_RANGE."""
    return float(structural_similarity(_clip(reference), _clip(test), data_range=HU_RANGE[1] - HU_RANGE[0]))


def can_reconstruct(generator, ct: CTVolume) -> str:
    """"" when ``generator``'s autoencoders can encode ``ct``, else why not (grid mismatch)."""
    shape, spacing = tuple(generator.cfg.grid_shape), tuple(generator.cfg.spacing_mm)
    if tuple(ct.shape) != shape or not np.allclose(ct.spacing_mm, spacing, atol=1e-3):
        return (f"the real CT grid {ct.shape} at {tuple(round(s, 3) for s in ct.spacing_mm)} mm differs from the "
                f"generator's {shape} at {spacing} mm")
    return ""


@torch.no_grad()
def reconstruct(generator, ct: CTVolume, seg: LabelMap, attributes: Mapping[str, Any] | None = None
                ) -> tuple[CTVolume, LabelMap]:
    """CT (HU) and merged segmentation after encode + decode by ``generator`` (a vctcore Generator);
    the grids must match (:func:`can_reconstruct`). ``attributes``: the patient's, for a post-processor
    that reads them (else "none")."""
    from vctcore.models.encode import encode_patient

    why = can_reconstruct(generator, ct)
    if why:
        raise ValueError(why)
    dev = generator.device
    x = torch.from_numpy(np.asarray(ct.data, dtype=np.float32))[None, None].to(dev)
    s = torch.from_numpy(np.asarray(seg.data, dtype=np.int64))[None].to(dev)
    z = encode_patient(generator.ae, generator.seg_ae, x, s, generator.cfg)
    hu, lab = generator.decode(z, attributes)
    return CTVolume(hu, ct.affine), LabelMap(lab, ct.affine, {k: v for k, v in MERGED_CLASSES.items() if k})


@torch.no_grad()
def segmentation_reconstruction_dice(seg_ae, labels: Iterable[np.ndarray], device: torch.device,
                                     precision: str = "bf16", latents: list[torch.Tensor] | None = None,
                                     noise_sds: Sequence[float] = (), seed: int = 0, min_island_voxels: int = 0) -> dict:
    """Dice of the segmentation autoencoder ``seg_ae`` alone (a vctcore ``SegAE``) on merged-class maps
    (X, Y, Z): each encoded whole and decoded in the generator's windows, as generation decodes Z_seg.

    Returns :func:`vctcore.evaluate.overlap.cohort_dice` of the maps ("mean" over the 16 organ classes,
    "per_class"), plus "fragments" and "fragments_truth": connected components per patient of the
    decoded and of the true maps (:func:`vctcore.evaluate.codebook.fragments`), and "latent_noise": for
    each level in ``noise_sds``, the same encoding decoded after :func:`vctcore.evaluate.codebook.perturb_latent`
    moved it by that many SDs (patient ``i`` drawn from ``seed + i``), keyed ``f"{level:g}"`` with its
    "mean" Dice and "fragments": how precisely a diffusion sample must land on the codes. With
    ``min_island_voxels``, also "cleaned": the plain reconstruction's "mean", "per_class" and "fragments"
    after :func:`vctcore.label_islands.remove_small_islands`, as generation decodes with
    ``seg_min_island_ml``. Scores a training run's segmentation AE before a generator exists
    (``bench/seg_ae.py``).
    """
    from vctcore.devices import autocast
    from vctcore.evaluate.codebook import fragments, perturb_latent
    from vctcore.evaluate.overlap import cohort_dice, dice_per_class
    from vctcore.generator import DECODE_ROI
    from vctcore.label_islands import remove_small_islands
    from vctcore.models.autoencoders import snap
    from vctcore.models.encode import encode_segmentation
    from vctcore.models.windowed import windowed

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
