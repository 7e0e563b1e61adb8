"""The independent segmenter: a small MONAI 3D U-Net, CT (HU) -> 17 classes (0 background + 16 merged).

It plays TotalSegmentator's part in the paper's fidelity checks (Dice against the generator's joint
segmentation, organ volumes and centroids, conditioning measurements), trained on a phantom cohort
that is *not* the generator's training set. When TotalSegmentator's weights are installed it is used
instead (:func:`load_segmenter` with ``kind="auto"``).

The network works on its own grid (``SegmenterConfig.spacing_mm``, 12 x 12 x 16 mm by default: the
default 6 x 6 x 8 mm phantom grid down-sampled 2x): a CT is resampled to it (trilinear, which is the
2x2x2 block mean for an exact 2x ratio), padded to a multiple of 8, segmented, and the class logits
are resampled back to the CT's own grid before the argmax. Arrays are (X, Y, Z) in RAS+ order.

A segmenter may be a two-stage cascade, as nnU-Net's "3d_cascade_fullres": the network above on its
coarse grid, then a *refiner*, a second small U-Net on a finer grid (6 x 6 x 8 mm by default, the
phantom grid) that reads the CT there together with the coarse class probabilities (trilinearly
up-sampled) and returns the final logits. At 12 mm a phantom kidney is about five voxels and the
coarse network never finds it; the refiner sees it at 57 (:mod:`vctcore.checkers.segmenter_refine`).

Files: ``DIR/segmenter.safetensors`` (weights, config in the header, kind "segmenter"), with a cascade
also ``DIR/refiner.safetensors`` (kind "segmenter_refiner"), and ``DIR/manifest.json`` (sha256 of
each, training cohort, steps, held-out Dice).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

from vctcore.assets import segmenter_dir
from vctcore.labels import MERGED_CLASSES, totalsegmentator_lookup
from vctcore.models.checkpoint import (CheckpointError, check_sha256, load_module, save_module, sha256_file,
                                       verified_manifest)
from vctcore.volume import CTVolume, LabelMap

N_CLASSES = len(MERGED_CLASSES)  # 17: background + 16 organ classes
WEIGHTS, REFINER, MANIFEST = "segmenter.safetensors", "refiner.safetensors", "manifest.json"
DEFAULT_SEGMENTER = segmenter_dir()
ERR_NO_SEGMENTER = ("{path}: no independent segmenter there ({what}); train one with `vct train-segmenter --cohort "
                    "DIR --out {path}` or install TotalSegmentator's weights")


@dataclass(frozen=True)
class SegmenterConfig:
    """Network and grid: ``channels`` per level (each level halves the grid), ``spacing_mm`` (X, Y, Z) of
    the working grid, ``hu_window`` the HU range mapped to [-1, 1], ``in_channels`` 1 (the CT) or, for a
    cascade's refiner, 1 + ``n_classes`` (the CT and the coarse stage's class probabilities)."""

    channels: tuple[int, ...] = (16, 32, 64, 128)
    num_res_units: int = 1
    spacing_mm: tuple[float, float, float] = (12.0, 12.0, 16.0)
    hu_window: tuple[float, float] = (-1000.0, 1000.0)
    n_classes: int = N_CLASSES
    in_channels: int = 1

    @property
    def multiple(self) -> int:
        """Input sizes must be multiples of this (2 ** number of down-sampling steps)."""
        return 2 ** (len(self.channels) - 1)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SegmenterConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class SegUNet(nn.Module):
    """3D U-Net of MONAI residual units with an explicit encoder (used for realism features too).

    ``forward``: (B, 1, X, Y, Z) normalised CT -> (B, n_classes, X, Y, Z) logits. Strided 3x3x3
    convolutions with padding 1 keep an axis of length 1 at length 1, so 2D slices can be encoded as
    (B, 1, X, Y, 1) volumes (:meth:`encode`).
    """

    def __init__(self, cfg: SegmenterConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        res = dict(spatial_dims=3, subunits=max(cfg.num_res_units, 1), norm="INSTANCE")
        self.down = nn.ModuleList(
            [ResidualUnit(in_channels=cfg.in_channels if i == 0 else ch[i - 1], out_channels=c,
                          strides=1 if i == 0 else 2, **res)
             for i, c in enumerate(ch)])
        self.up = nn.ModuleList(
            [Convolution(3, ch[i], ch[i - 1], strides=2, kernel_size=3, is_transposed=True, output_padding=1)
             for i in range(len(ch) - 1, 0, -1)])
        self.merge = nn.ModuleList(
            [ResidualUnit(in_channels=2 * ch[i - 1], out_channels=ch[i - 1], strides=1, **res)
             for i in range(len(ch) - 1, 0, -1)])
        self.head = nn.Conv3d(ch[0], cfg.n_classes, kernel_size=1)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps of every encoder level, finest first."""
        feats = []
        for block in self.down:
            x = block(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encode(x)
        y = feats[-1]
        for up, merge, skip in zip(self.up, self.merge, reversed(feats[:-1])):
            y = up(y)
            y = merge(torch.cat([y[..., :skip.shape[2], :skip.shape[3], :skip.shape[4]], skip], dim=1))
        return self.head(y)


def refiner_config(spacing_mm: tuple[float, float, float] = (6.0, 6.0, 8.0),
                   channels: tuple[int, ...] = (8, 16, 32, 64)) -> SegmenterConfig:
    """A cascade refiner's network: narrow at full resolution, where every channel costs most."""
    return SegmenterConfig(channels=channels, spacing_mm=spacing_mm, in_channels=1 + N_CLASSES)


def refine_input(x: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """The refiner's input (B, 1 + C, X, Y, Z): normalised CT ``x`` (B, 1, X, Y, Z) and the coarse class
    probabilities ``probs`` (B, C, x, y, z), up-sampled trilinearly to (X, Y, Z) and mapped to [-1, 1]."""
    if tuple(probs.shape[2:]) != tuple(x.shape[2:]):
        probs = F.interpolate(probs, size=x.shape[2:], mode="trilinear", align_corners=False)
    return torch.cat([x, probs.to(x.dtype) * 2.0 - 1.0], dim=1)


def argmax_classes(logits: torch.Tensor) -> torch.Tensor:
    """uint8 (X, Y, Z) argmax over axis 0 of (C, X, Y, Z) logits, reduced along a contiguous last axis
    (faster than ``argmax(0)``, which strides across the whole volume; the same result)."""
    return logits.permute(1, 2, 3, 0).contiguous().argmax(-1).to(torch.uint8)


def normalise(hu: torch.Tensor, cfg: SegmenterConfig) -> torch.Tensor:
    """HU -> [-1, 1] over ``cfg.hu_window`` (clipped)."""
    lo, hi = cfg.hu_window
    return (hu.clamp(lo, hi) - lo) / (hi - lo) * 2.0 - 1.0


def work_shape(shape: tuple[int, int, int], spacing_mm: tuple[float, ...], cfg: SegmenterConfig) -> tuple[int, ...]:
    """Shape (X, Y, Z) of a volume of ``shape`` at ``spacing_mm`` on the segmenter's grid."""
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing_mm, cfg.spacing_mm))


def to_work_grid(hu: np.ndarray, spacing_mm: tuple[float, ...], cfg: SegmenterConfig) -> torch.Tensor:
    """CT (X, Y, Z) HU -> float32 tensor (1, 1, X', Y', Z') in HU on the segmenter's grid (trilinear)."""
    x = torch.from_numpy(np.ascontiguousarray(hu, dtype=np.float32))[None, None]
    size = work_shape(hu.shape, spacing_mm, cfg)
    if tuple(size) == tuple(hu.shape):
        return x
    return F.interpolate(x, size=size, mode="trilinear", align_corners=False)


def labels_to_work_grid(labels: np.ndarray, size: tuple[int, ...], n_classes: int = N_CLASSES) -> np.ndarray:
    """Label map (X, Y, Z) -> uint8 (X', Y', Z') by the majority class in each target cell (one-hot
    resampled trilinearly, then argmax)."""
    if tuple(labels.shape) == tuple(size):
        return labels.astype(np.uint8)
    out = torch.zeros((n_classes, *size))
    lab = torch.from_numpy(labels.astype(np.int64))
    for c in range(n_classes):  # one class at a time keeps memory at one volume
        m = (lab == c).float()[None, None]
        out[c] = F.interpolate(m, size=size, mode="trilinear", align_corners=False)[0, 0]
    return out.argmax(0).to(torch.uint8).numpy()


def pad_to_multiple(x: torch.Tensor, multiple: int, value: float) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Pad the three spatial axes of (B, C, X, Y, Z) at their far end; returns (padded, original size)."""
    size = tuple(x.shape[2:])
    pad = [(-s) % multiple for s in size]
    if any(pad):
        x = F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]), value=value)
    return x, size  # type: ignore[return-value]


@dataclass
class Segmenter:
    """A loaded independent segmenter: ``kind`` "unet" or "totalsegmentator"."""

    kind: str
    net: SegUNet | None = None
    cfg: SegmenterConfig = field(default_factory=SegmenterConfig)
    path: Path | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    device: torch.device = torch.device("cpu")
    refiner: SegUNet | None = None  # a cascade's second, finer stage

    @property
    def sha256(self) -> str | None:
        """sha256 of the (coarse) network's weights."""
        return self.manifest.get("sha256")

    @property
    def digests(self) -> dict[str, str | None]:
        """sha256 of every weights file: what a cached result must be keyed on."""
        return {"segmenter": self.sha256, "refiner": (self.manifest.get("refiner") or {}).get("sha256")}

    @torch.no_grad()
    def coarse_logits(self, hu: np.ndarray, spacing_mm: tuple[float, ...]) -> torch.Tensor:
        """(n_classes, X', Y', Z') logits of the coarse network, on its grid, of a CT (X, Y, Z) in HU."""
        assert self.net is not None
        x = normalise(to_work_grid(hu, spacing_mm, self.cfg), self.cfg)
        x, size = pad_to_multiple(x, self.cfg.multiple, value=-1.0)
        y = self.net(x.to(self.device)).float().cpu()
        return y[0, :, :size[0], :size[1], :size[2]]

    @torch.no_grad()
    def coarse_probabilities(self, hu: np.ndarray, spacing_mm: tuple[float, ...],
                             size: tuple[int, ...] | None = None) -> torch.Tensor:
        """(1, n_classes, ...) class probabilities of the coarse network, on its grid or, with ``size``,
        up-sampled trilinearly to that (X, Y, Z) shape: what a refiner reads."""
        probs = self.coarse_logits(hu, spacing_mm).softmax(0)[None]
        if size is not None:
            probs = F.interpolate(probs, size=tuple(size), mode="trilinear", align_corners=False)
        return probs

    @torch.no_grad()
    def logits(self, hu: np.ndarray, spacing_mm: tuple[float, ...],
               box: tuple[slice, slice, slice] | None = None) -> torch.Tensor:
        """(n_classes, X', Y', Z') logits of a CT (X, Y, Z) in HU, on the last stage's grid (the refiner's
        in a cascade; the refiner runs under bf16 autocast where the CPU or GPU has it). ``box``: with a
        refiner on the CT's own grid, refine only that region; the logits then cover just the box."""
        from vctcore.devices import autocast

        if self.refiner is None:
            return self.coarse_logits(hu, spacing_mm)
        rcfg = self.refiner.cfg
        x = normalise(to_work_grid(hu, spacing_mm, rcfg), rcfg)
        probs = self.coarse_probabilities(hu, spacing_mm, None if box is None else x.shape[2:])
        if box is not None:
            x, probs = x[(..., *box)], probs[(..., *box)]
        x, size = pad_to_multiple(refine_input(x, probs), rcfg.multiple, value=-1.0)
        with autocast(self.device, "bf16"):
            y = self.refiner(x.to(self.device)).float().cpu()
        return y[0, :, :size[0], :size[1], :size[2]]

    def _refine_box(self, ct: CTVolume, body: np.ndarray, margin: int = 8) -> tuple[slice, slice, slice] | None:
        """The body's bounding box plus ``margin`` voxels, when a refiner runs on the CT's own grid (None
        otherwise, or without a body): the refiner's cost scales with voxels, outside the body every
        voxel is background anyway, and its instance-norm statistics then come from the body, as in
        training (crops centred on organs) rather than from a volume that is mostly air."""
        if self.refiner is None or not body.any():
            return None
        if tuple(work_shape(ct.shape, ct.spacing_mm, self.refiner.cfg)) != tuple(ct.shape):
            return None
        box = []
        for axis in range(3):
            idx = np.flatnonzero(body.any(axis=tuple(a for a in range(3) if a != axis)))
            box.append(slice(max(0, int(idx[0]) - margin), min(ct.shape[axis], int(idx[-1]) + 1 + margin)))
        return tuple(box)  # type: ignore[return-value]

    def segment(self, ct: CTVolume, body: np.ndarray | None = None) -> LabelMap:
        """Merged 16-class segmentation (uint8, on the CT's grid) of ``ct``; organs lie in the body, so
        voxels outside ``body`` (default :func:`vctcore.measure.morphology.largest_body` of its HU) are background."""
        from vctcore.measure.morphology import largest_body

        body = largest_body(ct.data) if body is None else body
        if self.kind == "totalsegmentator":
            from vctcore.measure.backends import run_totalsegmentator

            ts = run_totalsegmentator(ct, device=str(self.device))
            lut = np.zeros(max(256, int(ts.data.max()) + 1), np.uint8)
            known = totalsegmentator_lookup("total")
            lut[:len(known)] = known
            data = lut[ts.data]
        else:
            box = self._refine_box(ct, body)
            y = self.logits(np.asarray(ct.data, dtype=np.float32), ct.spacing_mm, box)
            if box is not None:
                data = np.zeros(ct.shape, np.uint8)
                data[box] = argmax_classes(y).numpy()
            else:
                if tuple(y.shape[1:]) != tuple(ct.shape):
                    y = F.interpolate(y[None], size=ct.shape, mode="trilinear", align_corners=False)[0]
                data = argmax_classes(y).numpy()
        data = np.where(body, data, 0).astype(np.uint8)
        return LabelMap(data, ct.affine, {k: v for k, v in MERGED_CLASSES.items() if k})


def save_segmenter(net: SegUNet, out: str | Path, manifest: dict[str, Any], refiner: SegUNet | None = None,
                   weights_file: Path | None = None) -> Path:
    """Write ``out/segmenter.safetensors`` (and with ``refiner``, ``out/refiner.safetensors``) and
    ``out/manifest.json`` (with each file's sha256; the refiner's under ``manifest["refiner"]``, beside
    whatever that entry already holds, e.g. its training record). ``weights_file``: ``net``'s weights
    file, copied byte for byte so that its sha256 stays the same (safetensors does not write its header
    in a fixed order, so saving the same weights again can give another digest)."""
    out = Path(out)
    if weights_file is not None:
        out.mkdir(parents=True, exist_ok=True)
        tmp_w = out / (WEIGHTS + ".tmp")
        shutil.copyfile(weights_file, tmp_w)
        path = tmp_w.replace(out / WEIGHTS)
    else:
        path = save_module(net, out / WEIGHTS, kind="segmenter", config=net.cfg.to_dict())
    full = {**manifest, "kind": "segmenter", "file": WEIGHTS, "sha256": sha256_file(path),
            "size_bytes": path.stat().st_size, "config": net.cfg.to_dict()}
    if refiner is not None:
        rpath = save_module(refiner, out / REFINER, kind="segmenter_refiner", config=refiner.cfg.to_dict())
        full["refiner"] = {**(manifest.get("refiner") or {}), "file": REFINER, "sha256": sha256_file(rpath),
                           "size_bytes": rpath.stat().st_size, "config": refiner.cfg.to_dict()}
    else:
        full.pop("refiner", None)
        (out / REFINER).unlink(missing_ok=True)  # a stale refiner must not pair with new coarse weights
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(full, indent=2, default=str))
    tmp.replace(out / MANIFEST)
    return path


def load_unet(path: str | Path = DEFAULT_SEGMENTER, device: str = "cpu") -> Segmenter:
    """Load a trained U-Net segmenter directory; CheckpointError naming the file when unusable."""
    from vctcore.devices import resolve_device
    from vctcore.models.checkpoint import read_metadata

    root = Path(path)
    weights = root / WEIGHTS
    if not weights.exists():
        raise CheckpointError(ERR_NO_SEGMENTER.format(path=root, what=f"{WEIGHTS} is missing"))
    manifest = verified_manifest(weights, root / MANIFEST)
    cfg = SegmenterConfig.from_dict(json.loads(read_metadata(weights).get("config", "{}")))
    net = SegUNet(cfg)
    load_module(net, weights, kind="segmenter")
    dev = resolve_device(device)
    refiner = _load_refiner(root, manifest)
    return Segmenter("unet", net.to(dev).eval(), cfg, root, manifest, dev,
                     None if refiner is None else refiner.to(dev).eval())


def _load_refiner(root: Path, manifest: dict[str, Any]) -> SegUNet | None:
    """The cascade refiner the manifest names (None when it names none), checked against its sha256."""
    from vctcore.models.checkpoint import read_metadata

    entry = manifest.get("refiner")
    if not entry:
        return None
    path = root / REFINER
    if not path.exists():
        raise CheckpointError(f"{path}: missing; {root / MANIFEST} names a cascade refiner")
    check_sha256(path, entry.get("sha256"), root / MANIFEST)
    refiner = SegUNet(SegmenterConfig.from_dict(json.loads(read_metadata(path).get("config", "{}"))))
    load_module(refiner, path, kind="segmenter_refiner")
    return refiner


def totalsegmentator_available() -> bool:
    """True when TotalSegmentator and the weights of its ``total`` task are installed (nothing downloads)."""
    from vctcore.measure.backends import BackendError, totalsegmentator_weights

    for fast in (False, True):
        try:
            folders, _ = totalsegmentator_weights("total", fast)
        except BackendError:
            return False
        if all(f.exists() for f in folders):
            return True
    return False


def load_segmenter(kind: str = "auto", path: str | Path | None = None, device: str = "cpu") -> Segmenter:
    """The independent segmenter: ``kind`` "auto" (TotalSegmentator when its weights are installed, else
    the U-Net at ``path``, default ``checkpoints/segmenter``), "unet" or "totalsegmentator"."""
    from vctcore.devices import resolve_device

    if kind not in ("auto", "unet", "totalsegmentator"):
        raise ValueError(f"segmenter must be auto, unet or totalsegmentator, got {kind!r}")
    if kind == "totalsegmentator" or (kind == "auto" and totalsegmentator_available()):
        if not totalsegmentator_available():
            raise CheckpointError("TotalSegmentator weights are not installed (see `vct measure --help`)")
        return Segmenter("totalsegmentator", manifest={"kind": "totalsegmentator", "task": "total"},
                         device=resolve_device(device))
    return load_unet(path or DEFAULT_SEGMENTER, device)
