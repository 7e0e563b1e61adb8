"""Train (or resume) a cascade refiner for a trained coarse segmenter (nnU-Net's "3d_cascade_fullres").

The coarse segmenter (12 x 12 x 16 mm) stays frozen. Every training patient is resampled once to the
refiner's grid (``RUN/cache/<id>.npz``, as :func:`vctcore.checkers.segmenter_train.prepare_cache`
does) and its coarse class probabilities are computed once, up-sampled to that grid and held in memory
as uint8 (17 bytes a voxel: about 57 MB a phantom, 3.4 GB for 60). A step takes ``batch_size`` crops
of ``patch`` voxels; a crop is centred on a voxel of a random class present in the patient with
probability ``class_centred`` (else anywhere), so that organs of a few dozen voxels (kidney, prostate)
are seen in most batches, as nnU-Net over-samples foreground. Augmentation is that of the coarse
network (HU scale/offset, blur, noise; no shift: crops move anyway). Loss: Dice (pooled over the
batch per class) + cross-entropy, under bf16 autocast where the CPU has it.

The result is a segmenter directory holding the coarse network unchanged and the refiner
(:func:`vctcore.checkers.segmenter.save_segmenter`); its manifest records both trainings.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from vctcore.checkers.segmenter import (WEIGHTS, Segmenter, SegmenterConfig, SegUNet, load_unet, pad_to_multiple,
                                        refine_input, refiner_config, save_segmenter)
from vctcore.checkers.segmenter_train import SegTrainResult, _fingerprint, augment, prepare_cache
from vctcore.devices import autocast
from vctcore.models.config import StageSchedule
from vctcore.provenance import provenance
from vctcore.train.loop import Progress, run_loop
from vctcore.train.seeds import child_seed

STAGE = "refiner"


@dataclass(frozen=True)
class RefineTrainConfig:
    """Schedule: ``steps`` of ``batch_size`` crops of ``patch`` voxels (X, Y, Z on the refiner's grid)
    at learning rate ``lr`` (cosine decay to 5 %); ``class_centred`` the share of crops centred on a
    random present class."""

    steps: int = 2000
    batch_size: int = 2
    lr: float = 2e-3
    checkpoint_every: int = 50
    patch: tuple[int, int, int] = (64, 64, 64)
    class_centred: float = 0.67
    seed: int = 0


@dataclass
class _Patient:
    hu: torch.Tensor  # (1, X, Y, Z) float32 HU on the refiner grid
    labels: torch.Tensor  # (X, Y, Z) int64
    probs: torch.Tensor  # (C, X, Y, Z) uint8, coarse class probabilities x 255
    where: list[np.ndarray]  # flat voxel indices of each class present (background excluded)


def coarse_probabilities(coarse: Segmenter, hu: np.ndarray, spacing_mm: Sequence[float]) -> torch.Tensor:
    """(C, X, Y, Z) uint8 coarse class probabilities x 255 of a CT (X, Y, Z) in HU, up-sampled to its grid."""
    probs = coarse.coarse_probabilities(hu, tuple(spacing_mm), hu.shape)[0]
    return (probs * 255.0).round().to(torch.uint8)


def _load_patients(files: Sequence[Path], coarse: Segmenter, cfg: SegmenterConfig) -> list[_Patient]:
    out = []
    for f in files:
        with np.load(f) as d:
            hu, lab = d["hu"].astype(np.float32), d["labels"].astype(np.int64)
        flat = lab.ravel()
        where = [np.flatnonzero(flat == c) for c in np.unique(flat) if c != 0]
        out.append(_Patient(torch.from_numpy(hu)[None], torch.from_numpy(lab),
                            coarse_probabilities(coarse, hu, cfg.spacing_mm), where))
    return out


def crop_start(shape: Sequence[int], patch: Sequence[int], centre: Sequence[int] | None,
               gen: torch.Generator) -> tuple[int, ...]:
    """Start (X, Y, Z) of a ``patch`` crop inside ``shape``: around ``centre`` when given, else uniform;
    clamped inside (a patch larger than the volume starts at 0 and is padded by the caller)."""
    start = []
    for n, p, c in zip(shape, patch, centre if centre is not None else [None] * 3):
        hi = max(n - p, 0)
        s = int(torch.randint(0, hi + 1, (1,), generator=gen)) if c is None else int(c) - p // 2
        start.append(min(max(s, 0), hi))
    return tuple(start)


def _crop(p: _Patient, patch: Sequence[int], class_centred: float, gen: torch.Generator, cfg: SegmenterConfig
          ) -> tuple[torch.Tensor, torch.Tensor]:
    centre = None
    if p.where and float(torch.rand(1, generator=gen)) < class_centred:
        idx = p.where[int(torch.randint(0, len(p.where), (1,), generator=gen))]
        centre = np.unravel_index(int(idx[int(torch.randint(0, idx.size, (1,), generator=gen))]), p.labels.shape)
    s = crop_start(p.labels.shape, patch, centre, gen)
    box = tuple(slice(a, a + n) for a, n in zip(s, patch))
    x, lab = augment(p.hu[(slice(None), *box)], p.labels[box], cfg, max_shift=0)
    return refine_input(x[None], p.probs[(slice(None), *box)][None].float() / 255.0)[0], lab


def train_refiner(cohort: str | Path, coarse: str | Path, out: str | Path, *, run: str | Path | None = None,
                  cfg: SegmenterConfig | None = None, train: RefineTrainConfig = RefineTrainConfig(),
                  max_minutes: float | None = None, limit: int | None = None, threads: int | None = None,
                  progress: Progress | None = None) -> SegTrainResult:
    """Train or resume a refiner for the segmenter at ``coarse`` on ``cohort``; exports the cascade
    (coarse weights unchanged + refiner) to ``out`` whenever it stops (time budget, SIGTERM or done).
    ``run`` holds the cache, resumable state and loss log (default ``out/run-refiner``)."""
    from monai.losses import DiceCELoss

    cohort, out = Path(cohort), Path(out)
    run = Path(run) if run is not None else out / "run-refiner"
    cfg = cfg or refiner_config()
    if cfg.in_channels != 1 + cfg.n_classes:
        raise ValueError(f"a refiner reads the CT and {cfg.n_classes} class probabilities: in_channels must be "
                         f"{1 + cfg.n_classes}, got {cfg.in_channels}")
    if out.resolve() == Path(coarse).resolve():
        raise ValueError(f"{out}: the cascade needs its own directory, not the coarse segmenter's")
    if threads:
        torch.set_num_threads(threads)
    base = load_unet(coarse)  # checked against its manifest's sha256, loaded without pickle
    if base.net is None or base.refiner is not None:
        raise ValueError(f"{coarse}: a refiner needs a coarse U-Net segmenter without one")
    files = prepare_cache(cohort, run, cfg, limit)
    deadline = time.monotonic() + 60.0 * max_minutes if max_minutes is not None else None  # training time only
    patients = _load_patients(files, base, cfg)
    torch.manual_seed(train.seed)
    gen = torch.Generator().manual_seed(child_seed(train.seed, 0))  # the crop sampler's stream
    net = SegUNet(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=train.lr, weight_decay=1e-5)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    schedule = StageSchedule(steps=train.steps, batch_size=train.batch_size, lr=train.lr,
                             checkpoint_every=train.checkpoint_every)

    def step_fn(step: int) -> dict[str, float]:
        for group in opt.param_groups:
            group["lr"] = float(train.lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(step / train.steps, 1.0)))))
        idx = torch.randint(0, len(patients), (train.batch_size,), generator=gen).tolist()
        xs, ys = zip(*(_crop(patients[i], train.patch, train.class_centred, gen, cfg) for i in idx))
        x, _ = pad_to_multiple(torch.stack(xs), cfg.multiple, -1.0)
        y, _ = pad_to_multiple(torch.stack(ys)[:, None].float(), cfg.multiple, 0.0)
        with autocast(torch.device("cpu"), "bf16"):
            logits = net(x)
        loss = loss_fn(logits.float(), y.long())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"dice_ce": float(loss.detach())}

    res = run_loop(STAGE, run, {"net": net}, {"opt": opt}, schedule, step_fn, deadline=deadline, progress=progress,
                   rng_state=lambda: {"crops": gen.get_state()}, set_rng_state=lambda st: gen.set_state(st["crops"]))
    manifest = {**{k: v for k, v in base.manifest.items() if k not in ("refiner", "holdout_dice")},
                "refiner": {"training": {"cohort": str(cohort.resolve()), "n_patients": len(files),
                                         "patients_fingerprint": _fingerprint(files), "steps": res.step,
                                         "total_steps": train.steps, "finished": res.finished,
                                         "seconds": round(res.seconds, 1), **asdict(train),
                                         "coarse": {"path": str(Path(coarse).resolve()), "sha256": base.sha256},
                                         "last_losses": res.last_losses}},
                **provenance()}
    net.eval()
    assert base.net is not None
    save_segmenter(base.net, out, manifest, refiner=net, weights_file=Path(coarse) / WEIGHTS)
    return SegTrainResult(res.step, res.total, res.finished, res.seconds, res.last_losses, out)
