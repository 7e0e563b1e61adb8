"""The independent segmenter: a small MONAI 3D U-Net, CT (HU) -> 17 classes (0 background + 16 merged).

It plays TotalSegmentator's part in the paper's fidelity checks (Dice against the generator's joint
segmentation, organ volumes and centroids, conditioning measurements), trained on a phantom cohort
that is *not* the generator's training set. When TotalSegmentator's weights are installed it is used
instead (:func:`load_segmenter` with ``kind="auto"``).

The network works on its own grid (``SegmenterConfig.spacing_mm``, 12 x 12 x 16 mm by default: the
default 6 x 6 x 8 mm phantom grid down-sampled 2x): a CT is resampled to it (trilinear, which is the
2x2x2 block mean for an exact 2x ratio), padded to a multiple of 8, segmented, and the class logits
are resampled back to the CT's own grid before the argmax. Arrays are (X, Y, Z) in RAS+ order.

Files: ``DIR/segmenter.safetensors`` (weights, config in the header, kind "segmenter") and
``DIR/manifest.json`` (sha256, training cohort, steps, held-out Dice).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

from vctcore.labels import MERGED_CLASSES, totalsegmentator_lookup
from vctcore.models.checkpoint import CheckpointError, load_module, save_module, sha256_file, verified_manifest
from vctcore.volume import CTVolume, LabelMap

N_CLASSES = len(MERGED_CLASSES)  # 17: background + 16 organ classes
WEIGHTS, MANIFEST = "segmenter.safetensors", "manifest.json"
DEFAULT_SEGMENTER = Path(__file__).resolve().parents[2] / "checkpoints" / "segmenter"
ERR_NO_SEGMENTER = ("{path}: no independent segmenter there ({what}); train one with `vct train-segmenter --cohort "
                    "DIR --out {path}` or install TotalSegmentator's weights")


@dataclass(frozen=True)
class SegmenterConfig:
    """Network and grid: ``channels`` per level (each level halves the grid), ``spacing_mm`` (X, Y, Z) of
    the working grid, ``hu_window`` the HU range mapped to [-1, 1]."""

    channels: tuple[int, ...] = (16, 32, 64, 128)
    num_res_units: int = 1
    spacing_mm: tuple[float, float, float] = (12.0, 12.0, 16.0)
    hu_window: tuple[float, float] = (-1000.0, 1000.0)
    n_classes: int = N_CLASSES

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
            [ResidualUnit(in_channels=1 if i == 0 else ch[i - 1], out_channels=c, strides=1 if i == 0 else 2, **res)
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

    @property
    def sha256(self) -> str | None:
        return self.manifest.get("sha256")

    @torch.no_grad()
    def logits(self, hu: np.ndarray, spacing_mm: tuple[float, ...]) -> torch.Tensor:
        """(n_classes, X', Y', Z') logits on the segmenter's grid of a CT (X, Y, Z) in HU."""
        assert self.net is not None
        x = normalise(to_work_grid(hu, spacing_mm, self.cfg), self.cfg)
        x, size = pad_to_multiple(x, self.cfg.multiple, value=-1.0)
        y = self.net(x.to(self.device)).float().cpu()
        return y[0, :, :size[0], :size[1], :size[2]]

    def segment(self, ct: CTVolume, body: np.ndarray | None = None) -> LabelMap:
        """Merged 16-class segmentation (uint8, on the CT's grid) of ``ct``; organs lie in the body, so
        voxels outside ``body`` (default :func:`vctcore.evaluate.anatomy.body_mask`) are background."""
        from vctcore.evaluate.anatomy import body_mask

        if self.kind == "totalsegmentator":
            from vctcore.measure.backends import run_totalsegmentator

            ts = run_totalsegmentator(ct, device=str(self.device))
            lut = np.zeros(max(256, int(ts.data.max()) + 1), np.uint8)
            known = totalsegmentator_lookup("total")
            lut[:len(known)] = known
            data = lut[ts.data]
        else:
            y = self.logits(np.asarray(ct.data, dtype=np.float32), ct.spacing_mm)
            if tuple(y.shape[1:]) != tuple(ct.shape):
                y = F.interpolate(y[None], size=ct.shape, mode="trilinear", align_corners=False)[0]
            data = y.argmax(0).to(torch.uint8).numpy()
        data = np.where(body_mask(ct) if body is None else body, data, 0).astype(np.uint8)
        return LabelMap(data, ct.affine, {k: v for k, v in MERGED_CLASSES.items() if k})


def save_segmenter(net: SegUNet, out: str | Path, manifest: dict[str, Any]) -> Path:
    """Write ``out/segmenter.safetensors`` and ``out/manifest.json`` (with the weights' sha256)."""
    out = Path(out)
    path = save_module(net, out / WEIGHTS, kind="segmenter", config=net.cfg.to_dict())
    full = {**manifest, "kind": "segmenter", "file": WEIGHTS, "sha256": sha256_file(path),
            "size_bytes": path.stat().st_size, "config": net.cfg.to_dict()}
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
    return Segmenter("unet", net.to(dev).eval(), cfg, root, manifest, dev)


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
