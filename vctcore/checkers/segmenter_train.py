"""Train (or resume) the independent segmenter on a cohort with merged labels (``seg.nii.gz``).

Each patient is resampled once to the segmenter's grid and cached (``RUN/cache/<id>.npz``). A step
takes ``batch_size`` whole volumes with light augmentation (HU scale/offset, noise, Gaussian blur so
that smoother synthetic images stay in domain, a shift of up to ``max_shift`` voxels) and minimises
Dice + cross-entropy. The step loop is :func:`vctcore.train.loop.run_loop`: state every
``checkpoint_every`` steps, on SIGTERM and when ``max_minutes`` runs out; a rerun continues. The
model is exported (:func:`save_segmenter`) whenever the run stops.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vctcore.checkers.segmenter import (MANIFEST, N_CLASSES, Segmenter, SegmenterConfig, SegUNet, labels_to_work_grid,
                                        load_unet, normalise, pad_to_multiple, save_segmenter, to_work_grid)
from vctcore.cohort import read_attributes
from vctcore.labels import MERGED_CLASSES
from vctcore.models.config import StageSchedule
from vctcore.overlap import cohort_dice, dice_per_class
from vctcore.provenance import provenance
from vctcore.train.loop import Progress, run_loop
from vctcore.volume import read_ct, read_labels

STAGE = "segmenter"


@dataclass(frozen=True)
class SegTrainConfig:
    """Schedule: ``steps`` of ``batch_size`` crops at learning rate ``lr`` (cosine decay); a crop is the
    whole X-Y plane and ``patch_z`` slices (None: the whole volume); ``max_shift`` voxels.
    ``batch_dice``: the Dice term pools the whole batch per class (MONAI ``batch=True``) instead of
    averaging per-crop Dice: a crop where a small organ (kidney, prostate: a few voxels at 12 mm) is
    absent then adds nothing for it, rather than a near-free 0 loss that dilutes its gradient.
    ``init``: a segmenter directory whose weights a new run starts from (fine-tuning)."""

    steps: int = 3000
    batch_size: int = 2
    lr: float = 2e-3
    checkpoint_every: int = 50
    max_shift: int = 4
    patch_z: int | None = 64
    seed: int = 0
    batch_dice: bool = True
    init: str | None = None


@dataclass
class SegTrainResult:
    step: int
    total: int
    finished: bool
    seconds: float
    losses: dict[str, float]
    out: Path


def _patient_files(cohort: Path, pid: str) -> tuple[Path, Path]:
    d = cohort / "patients" / pid
    return d / "ct.nii.gz", d / "seg.nii.gz"


def prepare_cache(cohort: Path, run: Path, cfg: SegmenterConfig, limit: int | None = None,
                  progress: Callable[[int, int, str], None] | None = None) -> list[Path]:
    """Resample every patient to the segmenter grid once (``RUN/cache/<id>.npz``: hu int16, labels uint8)."""
    ids = list(read_attributes(cohort)["id"])[:limit]
    cache = run / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for i, pid in enumerate(ids):
        f = cache / f"{pid}.npz"
        if not f.exists():
            ct_path, seg_path = _patient_files(cohort, pid)
            ct = read_ct(ct_path)
            seg = read_labels(seg_path, names=MERGED_CLASSES, like=ct)
            hu = to_work_grid(np.asarray(ct.data, np.float32), ct.spacing_mm, cfg)[0, 0].numpy()
            lab = labels_to_work_grid(seg.data, hu.shape)
            tmp = cache / f".{pid}.tmp.npz"
            np.savez_compressed(tmp, hu=np.round(hu).astype(np.int16), labels=lab)
            tmp.replace(f)
        out.append(f)
        if progress is not None:
            progress(i + 1, len(ids), pid)
    if not out:
        raise ValueError(f"{cohort}: the cohort has no patients")
    return out


def _fingerprint(files: Sequence[Path]) -> str:
    return hashlib.sha256("\n".join(f.stem for f in files).encode()).hexdigest()[:16]


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, 1, X, Y, Z) with ``sigma`` voxels."""
    r = max(1, int(np.ceil(2 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = k.numel()
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = r
        x = F.conv3d(F.pad(x, pad, mode="replicate"), k.view(shape))
    return x


def _shift(x: torch.Tensor, y: torch.Tensor, d: Sequence[int], fill: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Translate image (1, X, Y, Z) and labels (X, Y, Z) by ``d`` voxels, filling with air / background."""
    xs, ys = torch.full_like(x, fill), torch.zeros_like(y)
    src = tuple(slice(max(0, -s), n - max(0, s)) for s, n in zip(d, y.shape))
    dst = tuple(slice(max(0, s), n - max(0, -s)) for s, n in zip(d, y.shape))
    xs[(slice(None), *dst)] = x[(slice(None), *src)]
    ys[dst] = y[src]
    return xs, ys


def augment(hu: torch.Tensor, lab: torch.Tensor, cfg: SegmenterConfig, max_shift: int,
            patch_z: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One random crop (``patch_z`` slices) and augmentation of (1, X, Y, Z) HU and (X, Y, Z) labels (torch RNG)."""
    if patch_z is not None and patch_z < lab.shape[2]:
        # a uniform centre slice, the crop clamped inside: the top and bottom slices (brain, feet) are
        # covered as often as the middle ones (a uniform start covers the top slice once in Z - patch_z + 1)
        centre = int(torch.randint(0, lab.shape[2], (1,)))
        z0 = min(max(centre - patch_z // 2, 0), lab.shape[2] - patch_z)
        hu, lab = hu[..., z0:z0 + patch_z], lab[..., z0:z0 + patch_z]
    r = torch.rand(6)
    x = hu * (0.95 + 0.1 * r[0]) + (r[1] - 0.5) * 40.0
    if r[2] < 0.5:
        x = _blur(x[None], 0.4 + 0.8 * float(r[3]))[0]
    x = x + torch.randn_like(x) * 25.0 * float(r[4])
    x = normalise(x, cfg)
    if max_shift:
        d = torch.randint(-max_shift, max_shift + 1, (3,)).tolist()
        x, lab = _shift(x, lab, d, -1.0)
    return x, lab


def train_segmenter(cohort: str | Path, out: str | Path, *, run: str | Path | None = None,
                    cfg: SegmenterConfig = SegmenterConfig(), train: SegTrainConfig = SegTrainConfig(),
                    max_minutes: float | None = None, limit: int | None = None, threads: int | None = None,
                    progress: Progress | None = None) -> SegTrainResult:
    """Train or resume the segmenter on ``cohort``; exports to ``out`` when it stops (time budget,
    SIGTERM or done). ``run`` holds the cache, resumable state and loss log (default ``out/run``)."""
    from monai.losses import DiceCELoss

    cohort, out = Path(cohort), Path(out)
    run = Path(run) if run is not None else out / "run"
    if threads:
        torch.set_num_threads(threads)
    files = prepare_cache(cohort, run, cfg, limit)
    deadline = time.monotonic() + 60.0 * max_minutes if max_minutes is not None else None  # training time only
    data = [np.load(f) for f in files]
    hus = [torch.from_numpy(d["hu"].astype(np.float32))[None] for d in data]
    labs = [torch.from_numpy(d["labels"].astype(np.int64)) for d in data]
    torch.manual_seed(train.seed)
    net = SegUNet(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=train.lr, weight_decay=1e-5)
    init_sha = None
    if train.init is not None and not (run / "state" / f"{STAGE}.pt").exists():
        start = load_unet(train.init)  # checked against its manifest's sha256, loaded without pickle
        if start.cfg != cfg:
            raise ValueError(f"{train.init}: its network {start.cfg.to_dict()} differs from the one asked for "
                             f"{cfg.to_dict()}")
        net.load_state_dict(start.net.state_dict())
        init_sha = start.sha256
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, squared_pred=False,
                         batch=train.batch_dice)
    schedule = StageSchedule(steps=train.steps, batch_size=train.batch_size, lr=train.lr,
                             checkpoint_every=train.checkpoint_every)

    def step_fn(step: int) -> dict[str, float]:
        for group in opt.param_groups:  # cosine decay to 5 % of the start rate
            group["lr"] = float(train.lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(step / train.steps, 1.0)))))
        idx = torch.randint(0, len(hus), (train.batch_size,)).tolist()
        xs, ys = zip(*(augment(hus[i], labs[i], cfg, train.max_shift, train.patch_z) for i in idx))
        x, size = pad_to_multiple(torch.stack(xs), cfg.multiple, -1.0)
        y, _ = pad_to_multiple(torch.stack(ys)[:, None].float(), cfg.multiple, 0.0)
        loss = loss_fn(net(x), y.long())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"dice_ce": float(loss.detach())}

    res = run_loop(STAGE, run, {"net": net}, {"opt": opt}, schedule, step_fn, deadline=deadline, progress=progress)
    manifest = {"training": {"cohort": str(cohort.resolve()), "n_patients": len(files),
                             "patients_fingerprint": _fingerprint(files), "steps": res.step,
                             "total_steps": train.steps, "finished": res.finished, "seconds": round(res.seconds, 1),
                             "batch_size": train.batch_size, "patch_z": train.patch_z, "lr": train.lr,
                             "seed": train.seed, "batch_dice": train.batch_dice,
                             "init": {"path": str(Path(train.init).resolve()), "sha256": init_sha}
                             if init_sha else _previous_init(out),
                             "last_losses": res.last_losses},
                **provenance()}
    net.eval()
    save_segmenter(net, out, manifest)
    return SegTrainResult(res.step, res.total, res.finished, res.seconds, res.last_losses, out)


def _previous_init(out: Path) -> dict[str, Any] | None:
    """The ``init`` record of the segmenter this run exported before (a resumed fine-tune keeps it)."""
    try:
        return json.loads((out / MANIFEST).read_text())["training"].get("init")
    except (OSError, ValueError, KeyError):
        return None


def holdout_dice(segmenter: Segmenter, cohort: str | Path, n: int = 4) -> dict[str, Any]:
    """Dice of ``segmenter`` against the first ``n`` patients' ``seg.nii.gz`` of ``cohort``
    (per class averaged over patients, and the average over classes)."""
    cohort = Path(cohort)
    per_patient = []
    for pid in list(read_attributes(cohort)["id"])[:n]:
        ct_path, seg_path = _patient_files(cohort, pid)
        ct = read_ct(ct_path)
        truth = read_labels(seg_path, names=MERGED_CLASSES, like=ct)
        per_patient.append(dice_per_class(segmenter.segment(ct).data, truth.data, range(1, N_CLASSES)))
    summary = cohort_dice(per_patient)
    return {"cohort": str(cohort), "n": len(per_patient), "mean": summary["mean"], "per_class": summary["per_class"]}
