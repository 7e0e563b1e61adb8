"""Train the reference downstream model (:mod:`vctcore.downstream.reference`) on a cohort.

The paper's recipe (section 4.3.1), sized for a CPU: MSE on the standardised target, AdamW, the learning
rate divided by 10 at 50 % and again at 90 % of the epochs, batches of 16, training slices drawn at random
from the middle third of the body (coronal and sagittal apart), the body-middle slices for evaluation.
Each patient's CT is read once: ``slices_per_patient`` random coronal and sagittal images (and the middle
ones) go to a bank in memory (float16, 55 kB per 288 x 96 image), and every epoch draws one coronal and
one sagittal image per patient from it, with light augmentation: left-right flip of the coronal image,
shifts of up to 4 pixels, intensity scale +-5 %, noise on the body only (a model trained with noise in
the air learns the background's noise level, and its noise-free evaluation images then come out more
than 1 SD off). No scale augmentation: body size stays a cue, as it is for the paper's model (the
shortcut a biased trial is designed to expose).

The target values come from the caller (a trial measures them on the images); nothing here reads them
from the cohort. Output directory: ``model.safetensors`` (weights only), ``card.yaml``, ``training_log.csv``.
"""
from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from vctcore.attributes import ATTRIBUTES
from vctcore.cohort import _atomic_text
from vctcore.devices import describe_device
from vctcore.downstream.card import DownstreamError, InputSpec, ModelCard, Preprocessing, write_card
from vctcore.downstream.preprocess import DEFAULT_PREPROCESSING, body_frame, plane_image, slice_index
from vctcore.downstream.reference import INPUT_NAMES, ReferenceConfig, ReferenceRegressor, backbone_card
from vctcore.models.checkpoint import save_module, sha256_file
from vctcore.provenance import provenance
from vctcore.volume import read_ct

WEIGHTS = "model.safetensors"
LOG = "training_log.csv"
KIND = "downstream-reference"
#: a default run: 40 epochs at a base learning rate of 3e-3 (the paper's 100 epochs at 1e-4 fit a pretrained
#: Swin-B; from scratch on a CPU, 3e-3 reaches in 40 epochs what 1e-3 needs 80 for; the shipped model's card
#: records its training)
DEFAULT_EPOCHS = 40
DEFAULT_LR = 3e-3
MAX_SHIFT = 4
#: a progress callback (stage, done, total, values): stage "slices" per patient, "train" per epoch
Progress = Callable[[str, int, int, dict[str, float]], None]


def training_defaults() -> dict[str, Any]:
    """What a default :func:`train_reference` run depends on besides its data and seed: epochs, learning
    rate, backbone settings and preprocessing (a trial retrains its model when any of them changes)."""
    return {"epochs": DEFAULT_EPOCHS, "lr": DEFAULT_LR, "max_shift": MAX_SHIFT,
            "backbone": asdict(ReferenceConfig()), "preprocessing": asdict(DEFAULT_PREPROCESSING)}


def _check_targets(targets: pd.DataFrame, cohort: Path, target: str) -> tuple[list[str], np.ndarray]:
    """(ids, y float64) of the targets table; DownstreamError for missing columns, duplicates, non-finite
    values, unknown patients or a target that is not a continuous attribute."""
    attr = ATTRIBUTES.get(target)
    if attr is None or attr.is_categorical:
        known = ", ".join(n for n, a in ATTRIBUTES.items() if not a.is_categorical)
        raise DownstreamError(f"target {target!r} is not a continuous attribute; known: {known}")
    missing = [c for c in ("id", "y") if c not in targets.columns]
    if missing:
        raise DownstreamError(f"targets: missing column(s) {', '.join(missing)} (need id, y)")
    ids = [str(i) for i in targets["id"]]
    dup = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dup:
        raise DownstreamError(f"targets: duplicate id(s) {', '.join(dup[:5])}")
    y = pd.to_numeric(targets["y"], errors="coerce").to_numpy(np.float64)
    bad = [ids[i] for i in np.flatnonzero(~np.isfinite(y))]
    if bad:
        raise DownstreamError(f"targets: id(s) {', '.join(bad[:5])} have no finite y")
    if len(ids) < 2:
        raise DownstreamError(f"targets: need at least 2 patients, got {len(ids)}")
    absent = [i for i in ids if not (cohort / "patients" / i / "ct.nii.gz").is_file()]
    if absent:
        raise DownstreamError(f"{cohort}: no CT for patient(s) {', '.join(absent[:5])}"
                              f"{f' (+{len(absent) - 5} more)' if len(absent) > 5 else ''}")
    return ids, y


def build_bank(cohort: Path, ids: list[str], prep: Preprocessing, *, k: int, seed: int,
               progress: Progress | None = None) -> dict[str, torch.Tensor]:
    """Per patient ``k`` random coronal and sagittal images (middle third of the body) and the middle ones:
    ``{"coronal": (P, k, 1, H, W), "sagittal": ..., "coronal_mid": (P, 1, H, W), "sagittal_mid": ...}``
    float16 in [0, 1]. Patient i's draws come from seed ``[seed, i]``, whatever else is in the list."""
    height, width = prep.input_size
    bank = {p: torch.empty((len(ids), k, 1, height, width), dtype=torch.float16) for p in INPUT_NAMES}
    bank.update({f"{p}_mid": torch.empty((len(ids), 1, height, width), dtype=torch.float16) for p in INPUT_NAMES})
    for i, pid in enumerate(ids):
        ct = read_ct(cohort / "patients" / pid / "ct.nii.gz")
        frame = body_frame(ct)
        rng = np.random.default_rng([seed, i])
        for plane in INPUT_NAMES:
            for j in range(k):
                index = slice_index(frame, plane, rng)
                bank[plane][i, j] = torch.from_numpy(plane_image(ct, plane, index, prep, frame))
            bank[f"{plane}_mid"][i] = torch.from_numpy(plane_image(ct, plane, slice_index(frame, plane), prep, frame))
        if progress:
            progress("slices", i + 1, len(ids), {})
    return bank


def augment(x: torch.Tensor, rng: np.random.Generator, gen: torch.Generator, *, flip: bool) -> torch.Tensor:
    """Light augmentation of a batch (N, 1, H, W) in [0, 1]: left-right flip (when ``flip``), a shift of up
    to ``MAX_SHIFT`` pixels (air fills in), intensity scale 0.95-1.05, Gaussian noise SD 0.01 inside the body;
    values stay in [0, 1]."""
    n, _, height, width = x.shape
    padded = F.pad(x, (MAX_SHIFT,) * 4)
    shifts = rng.integers(0, 2 * MAX_SHIFT + 1, size=(n, 2))
    out = torch.stack([padded[i, :, r:r + height, c:c + width] for i, (r, c) in enumerate(shifts)])
    if flip:
        mirrored = torch.from_numpy(rng.random(n) < 0.5)
        out[mirrored] = out[mirrored].flip(-1)
    scale = torch.from_numpy(rng.uniform(0.95, 1.05, size=(n, 1, 1, 1)).astype(np.float32))
    # noise on tissue only: air stays exactly 0 as at evaluation (noise in the air shifts the pooled features)
    noisy = out * scale + 0.01 * torch.randn(out.shape, generator=gen) * (out > 0)
    return noisy.clamp_(0.0, 1.0)


def step_lr(base: float, epoch: int, epochs: int) -> float:
    """The paper's schedule: ``base``, divided by 10 from 50 % of ``epochs`` and by 100 from 90 % (0-based)."""
    return base * (0.1 if epoch >= int(0.5 * epochs) else 1.0) * (0.1 if epoch >= int(0.9 * epochs) else 1.0)


@torch.no_grad()
def predict_bank(net: ReferenceRegressor, bank: dict[str, torch.Tensor], batch_size: int = 32) -> np.ndarray:
    """Predictions (target unit) on the bank's middle slices."""
    net.eval()
    out = [net(bank["coronal_mid"][i:i + batch_size].float(), bank["sagittal_mid"][i:i + batch_size].float())
           for i in range(0, len(bank["coronal_mid"]), batch_size)]
    return torch.cat(out).numpy().astype(np.float64)


def _plan_epochs(planned: int, done: int, elapsed_s: float, epoch_s: float, max_minutes: float | None) -> int:
    """Epochs to run in all: ``planned``, or fewer when ``max_minutes`` would not hold them (at least ``done``)."""
    if max_minutes is None or epoch_s <= 0:
        return planned
    fit = done + int(max(0.0, max_minutes * 60.0 - elapsed_s) // epoch_s)
    return max(done, min(planned, fit))


def train_reference(cohort_dir: str | Path, targets: pd.DataFrame, *, target: str, out: str | Path, seed: int = 0,
                    epochs: int = DEFAULT_EPOCHS, batch_size: int = 16, lr: float = DEFAULT_LR,
                    max_minutes: float | None = None, progress: Progress | None = None,
                    config: ReferenceConfig = ReferenceConfig(), preprocessing: Preprocessing = DEFAULT_PREPROCESSING,
                    slices_per_patient: int = 8, name: str | None = None) -> Path:
    """Train a reference model on ``targets`` (columns ``id``, ``y`` in ``target``'s unit) of the patients of
    ``cohort_dir`` and write it to ``out`` (returned). ``max_minutes`` caps the whole run (slice bank
    included): after the first epoch the number of epochs is cut to what fits, and the learning-rate steps
    follow the cut schedule. Deterministic for a seed on a given machine and thread count."""
    start = time.perf_counter()
    cohort, out = Path(cohort_dir), Path(out)
    if epochs < 1 or batch_size < 1 or slices_per_patient < 1 or not lr > 0:
        raise DownstreamError(f"epochs, batch_size and slices_per_patient must be at least 1 and lr positive, got "
                              f"{epochs}, {batch_size}, {slices_per_patient}, {lr}")
    ids, y = _check_targets(targets, cohort, target)
    report = progress or (lambda *a: None)
    bank = build_bank(cohort, ids, preprocessing, k=slices_per_patient, seed=seed, progress=report)
    torch.manual_seed(seed)
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    mean, sd = float(y.mean()), float(y.std()) or 1.0
    net = ReferenceRegressor(config, mean, sd)
    y_std = torch.from_numpy((y - mean) / sd).float()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    log: list[dict[str, Any]] = []
    planned, epoch = epochs, 0
    while epoch < epochs:
        t_epoch = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = step_lr(lr, epoch, epochs)
        net.train()
        losses, errors = [], []
        order = rng.permutation(len(ids))
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            pick = rng.integers(0, slices_per_patient, size=(2, len(idx)))
            cor = augment(bank["coronal"][idx, pick[0]].float(), rng, gen, flip=True)
            sag = augment(bank["sagittal"][idx, pick[1]].float(), rng, gen, flip=False)
            pred = net.standardised(cor, sag)
            loss = F.mse_loss(pred, y_std[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()) * len(idx))
            errors.extend((pred.detach() - y_std[idx]).abs().mul(sd).tolist())
        epoch += 1
        now = time.perf_counter()
        row = {"epoch": epoch, "lr": opt.param_groups[0]["lr"], "loss": sum(losses) / len(ids),
               "mae": float(np.mean(errors)), "seconds": round(now - start, 2)}
        log.append(row)
        if epoch == 1:
            epochs = _plan_epochs(planned, epoch, now - start, now - t_epoch, max_minutes)
        elif max_minutes is not None and now - start > max_minutes * 60.0:
            epochs = epoch
        report("train", epoch, epochs, {"loss": row["loss"], "mae": row["mae"]})
    wall = time.perf_counter() - start
    train_mae = float(np.mean(np.abs(predict_bank(net, bank) - y)))
    return _write_model(net.eval(), out, cohort=cohort, ids=ids, y=y, target=target, seed=seed, prep=preprocessing,
                        config=config, log=log, name=name or f"reference-{target}",
                        training={"epochs": epoch, "epochs_planned": planned, "batch_size": batch_size, "lr": lr,
                                  "slices_per_patient": slices_per_patient, "max_minutes": max_minutes},
                        metrics={"train_mae": round(train_mae, 4), "train_mae_note": "body-middle slices of the "
                                 "training patients, no augmentation", "final_epoch_loss": round(log[-1]["loss"], 5),
                                 "wall_time_s": round(wall, 1), "device": describe_device(torch.device("cpu"))})


def _file_sha256(path: Path) -> str | None:
    return sha256_file(path) if path.is_file() else None


def _write_model(net: ReferenceRegressor, out: Path, *, cohort: Path, ids: list[str], y: np.ndarray, target: str,
                 seed: int, prep: Preprocessing, config: ReferenceConfig, log: list[dict[str, Any]], name: str,
                 training: dict[str, Any], metrics: dict[str, Any]) -> Path:
    """Write weights, card and log of a trained reference model to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    save_module(net, out / WEIGHTS, kind=KIND, config=config.to_dict())
    _atomic_text(out / LOG, pd.DataFrame(log).to_csv(index=False))
    unit = ATTRIBUTES[target].unit
    ids_sha = hashlib.sha256("\n".join(ids).encode()).hexdigest()
    card = ModelCard(
        name=name, task="regression", target=target, unit=unit, format="vct-reference", weights=WEIGHTS,
        weights_sha256=sha256_file(out / WEIGHTS),
        inputs=tuple(InputSpec(p, p, (1, *prep.input_size)) for p in INPUT_NAMES), preprocessing=prep,
        intended_population={
            "summary": f"adults like the {len(ids)} training patients of {cohort.name}; whole-body CT in HU",
            f"{target}_range": [round(float(y.min()), 2), round(float(y.max()), 2)]},
        training_data={"cohort": str(cohort.resolve()), "attributes_sha256": _file_sha256(cohort / "attributes.csv"),
                       "n_patients": len(ids), "ids": ids, "ids_sha256": ids_sha, "target": target,
                       "target_mean": round(float(y.mean()), 4), "target_sd": round(float(y.std()), 4),
                       "seed": seed, **training, **provenance()},
        metrics=metrics,
        description=(f"2.5D {target} regressor after the VCT paper (4.3.1): one shared 2D MONAI ResNet reads the "
                     "coronal and the sagittal body-middle slice, features concatenated, linear head. The paper's "
                     "Swin-B with ImageNet-21k weights is the GPU-scale option and its weights cannot be fetched "
                     "offline; this small ResNet (group norm, trained from scratch) trains on 2 CPU cores in "
                     "minutes."),
        backbone=backbone_card(config))
    write_card(card, out)
    return out


__all__ = ["DEFAULT_EPOCHS", "DEFAULT_LR", "LOG", "WEIGHTS", "augment", "build_bank", "predict_bank", "step_lr",
           "train_reference"]
