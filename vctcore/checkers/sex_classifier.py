"""Independent sex check on the image: a small 3D ResNet (MONAI) that reads a whole CT and says F or M.

The paper checked the sex of 100 synthetic images by eye. The rule in :mod:`vctcore.fidelity.sex` reads
the independent segmentation, but at the segmenter's 12 mm grid the prostate is a few voxels and that
segmenter never finds it, so the rule calls every patient F, real ones included. This classifier looks
at the image itself (pelvis and shoulder breadth, breasts, fat distribution, prostate), is trained on
real (phantom) CT only, and is validated on real patients it did not see: its accuracy there is the
floor that the synthetic figure is read against.

Input: a CT (X, Y, Z) in HU, resampled to ``spacing_mm`` (trilinear) and mapped to [-1, 1] over
``hu_window``; the network pools globally, so any field of view works. Output: P(male).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets import ResNet
from torch import nn

from vctcore.assets import sex_classifier_dir
from vctcore.checkers.segmenter import normalise, to_work_grid
from vctcore.cohort import read_attributes
from vctcore.models.checkpoint import (CheckpointError, load_module, read_metadata, save_module, sha256_file,
                                       verified_manifest)
from vctcore.provenance import provenance
from vctcore.volume import CTVolume, read_ct

WEIGHTS = "sex_classifier.safetensors"
MANIFEST = "manifest.json"
DEFAULT_SEX_CLASSIFIER = sex_classifier_dir()


@dataclass(frozen=True)
class SexClassifierConfig:
    """Working grid ``spacing_mm`` (X, Y, Z), HU window mapped to [-1, 1], ResNet widths per stage."""

    spacing_mm: tuple[float, float, float] = (12.0, 12.0, 16.0)
    hu_window: tuple[float, float] = (-1000.0, 1000.0)
    channels: tuple[int, ...] = (8, 16, 32, 64)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SexClassifierConfig":
        return cls(**{k: tuple(v) for k, v in d.items()})


def build_net(cfg: SexClassifierConfig) -> nn.Module:
    """MONAI ResNet, one basic block per stage, group norm (batches are small), one logit (male)."""
    return ResNet(block="basic", layers=[1] * len(cfg.channels), block_inplanes=list(cfg.channels), spatial_dims=3,
                  n_input_channels=1, conv1_t_size=3, conv1_t_stride=2, num_classes=1,
                  norm=("group", {"num_groups": 4}))


def to_input(hu: np.ndarray, spacing_mm: tuple[float, ...], cfg: SexClassifierConfig) -> torch.Tensor:
    """CT (X, Y, Z) HU -> (1, 1, X', Y', Z') float32 on the working grid, mapped to [-1, 1]: the
    independent segmenter's resampling and windowing, with this config's grid and window."""
    return normalise(to_work_grid(hu, spacing_mm, cfg), cfg)


@dataclass
class SexClassifier:
    """A loaded classifier: ``call(ct)`` -> {"sex": "F"/"M", "p_male": float}."""

    net: nn.Module
    cfg: SexClassifierConfig
    path: Path | None = None
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str | None:
        return self.manifest.get("sha256")

    @torch.no_grad()
    def p_male(self, ct: CTVolume) -> float:
        x = to_input(np.asarray(ct.data, dtype=np.float32), ct.spacing_mm, self.cfg)
        return float(torch.sigmoid(self.net(x)).item())

    def call(self, ct: CTVolume) -> dict[str, Any]:
        p = self.p_male(ct)
        return {"sex": "M" if p >= 0.5 else "F", "p_male": round(p, 4)}


def load_sex_classifier(path: str | Path = DEFAULT_SEX_CLASSIFIER) -> SexClassifier:
    """Load a classifier directory; CheckpointError naming the file when it is missing, corrupt or foreign."""
    root = Path(path)
    weights = root / WEIGHTS
    if not weights.exists():
        raise CheckpointError(f"{weights}: no sex classifier there; train one with `vct train-sex-classifier "
                              f"--cohort DIR --out {root}`")
    manifest = verified_manifest(weights, root / MANIFEST)
    cfg = SexClassifierConfig.from_dict(json.loads(read_metadata(weights).get("config", "{}")))
    net = build_net(cfg)
    load_module(net, weights, kind="sex_classifier")
    return SexClassifier(net.eval(), cfg, root, manifest)


# ---------------------------------------------------------------- training
@dataclass(frozen=True)
class SexTrainConfig:
    """``steps`` of ``batch_size`` whole volumes, AdamW at ``lr`` with cosine decay, seeded."""

    steps: int = 400
    batch_size: int = 4
    lr: float = 2e-3
    seed: int = 0


def load_inputs(cohort: str | Path, cfg: SexClassifierConfig, limit: int | None = None,
                progress: Callable[[int, int], None] | None = None) -> tuple[list[torch.Tensor], np.ndarray]:
    """Every patient's CT on the working grid, and the label (1 = male) from attributes.csv."""
    cohort = Path(cohort)
    table = read_attributes(cohort).iloc[:limit]
    bad = sorted(set(table["sex"].astype(str)) - {"F", "M"})
    if bad:
        raise ValueError(f"{cohort}/attributes.csv: sex must be F or M, found {bad}")
    xs = []
    for i, pid in enumerate(table["id"].astype(str)):
        ct = read_ct(cohort / "patients" / pid / "ct.nii.gz")
        xs.append(to_input(np.asarray(ct.data, np.float32), ct.spacing_mm, cfg)[0])
        if progress:
            progress(i + 1, len(table))
    return xs, (table["sex"].astype(str) == "M").to_numpy(np.float32)


def _augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Left-right flip, intensity scale/offset, noise, blur (synthetic images are smoother), a shift."""
    if rng.random() < 0.5:
        x = x.flip(1)
    x = x * rng.uniform(0.9, 1.1) + rng.uniform(-0.03, 0.03)
    x = x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(int(rng.integers(2**31))))
    if rng.random() < 0.5:
        x = F.avg_pool3d(x[None], 3, stride=1, padding=1, count_include_pad=False)[0]
    shift = [int(s) for s in rng.integers(-3, 4, size=3)]
    return torch.roll(x, shifts=shift, dims=(1, 2, 3))


def _batch(xs: list[torch.Tensor]) -> torch.Tensor:
    """Stack volumes of slightly different sizes, padded with air (-1) to the largest."""
    size = [max(x.shape[i] for x in xs) for i in (1, 2, 3)]
    return torch.stack([F.pad(x, (0, size[2] - x.shape[3], 0, size[1] - x.shape[2], 0, size[0] - x.shape[1]),
                              value=-1.0) for x in xs])


@torch.no_grad()
def accuracy(clf: SexClassifier, xs: list[torch.Tensor], y: np.ndarray) -> float:
    """Share of volumes (already on the working grid) whose call matches ``y`` (1 = male)."""
    clf.net.eval()
    p = np.array([float(torch.sigmoid(clf.net(x[None])).item()) for x in xs])
    return float(((p >= 0.5) == (y >= 0.5)).mean())


def train_sex_classifier(cohort: str | Path, out: str | Path, *, cfg: SexClassifierConfig = SexClassifierConfig(),
                         train: SexTrainConfig = SexTrainConfig(), val: str | Path | None = None,
                         limit: int | None = None,
                         progress: Callable[[str, int, int, dict[str, float]], None] | None = None) -> SexClassifier:
    """Train on the real CTs of ``cohort`` and write ``out/sex_classifier.safetensors`` + manifest.json
    (config, cohort, seed, accuracy on ``val`` when given, sha256, package versions). A few minutes on
    2 CPU cores for 60 patients, so it is not resumable: a rerun starts again."""
    t0 = time.perf_counter()
    report = (lambda stage, d, n, losses: progress(stage, d, n, losses)) if progress else (lambda *a: None)
    xs, y = load_inputs(cohort, cfg, limit, progress=lambda d, n: report("load", d, n, {}))
    if len(set(y.tolist())) < 2:
        raise ValueError(f"{cohort}: the training cohort needs both sexes")
    torch.manual_seed(train.seed)
    rng = np.random.default_rng(train.seed)
    net = build_net(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=train.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=train.steps)
    # balanced batches: each draws half of its volumes from each sex
    by_sex = [np.flatnonzero(y < 0.5), np.flatnonzero(y >= 0.5)]
    net.train()
    loss_ema = None
    for step in range(1, train.steps + 1):
        idx = [int(rng.choice(by_sex[i % 2])) for i in range(train.batch_size)]
        xb = _batch([_augment(xs[i], rng) for i in idx])
        logit = net(xb)[:, 0]
        loss = F.binary_cross_entropy_with_logits(logit, torch.from_numpy(y[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        value = float(loss.detach())
        loss_ema = value if loss_ema is None else 0.95 * loss_ema + 0.05 * value
        report("train", step, train.steps, {"bce": loss_ema})
    clf = SexClassifier(net.eval(), cfg)
    manifest: dict[str, Any] = {
        "kind": "sex_classifier", "config": cfg.to_dict(), "training": {
            "cohort": str(cohort), "n_patients": len(xs), "n_male": int(y.sum()), **asdict(train),
            "train_accuracy": accuracy(clf, xs, y), "seconds": round(time.perf_counter() - t0, 1)},
        **provenance(),
    }
    if val is not None:
        vx, vy = load_inputs(val, cfg)
        manifest["validation"] = {"cohort": str(val), "n_patients": len(vx), "accuracy": accuracy(clf, vx, vy)}
    out = Path(out)
    path = save_module(net, out / WEIGHTS, kind="sex_classifier", config=cfg.to_dict())
    manifest |= {"file": WEIGHTS, "sha256": sha256_file(path), "size_bytes": path.stat().st_size}
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, default=str))
    tmp.replace(out / MANIFEST)
    clf.path, clf.manifest = out, manifest
    return clf
