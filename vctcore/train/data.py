"""Training data: a cohort directory (phantom or real) held in memory as arrays on the preset grid.

A cohort is ``DIR/attributes.csv`` + ``DIR/patients/<id>/{ct,seg}.nii.gz`` (see vctcore.cohort).
Volumes must already be on the preset's grid shape (phantom cohorts are; real data is resampled
by whoever builds the cohort). The first load writes an uncompressed cache
(``<cache>/ct.npy`` int16 HU, ``seg.npy`` uint8 merged classes, axes (N, X, Y, Z)) that later
runs memory-map, so a resumed run starts in seconds.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vctcore.cohort import read_attributes
from vctcore.models.checkpoint import sha256_file
from vctcore.volume import read_ct, read_labels


@dataclass
class CohortArrays:
    """CT (N, X, Y, Z) int16 HU, seg (N, X, Y, Z) uint8 merged classes, attribute table (N rows)."""

    ct: np.ndarray
    seg: np.ndarray
    table: pd.DataFrame
    spacing_mm: tuple[float, float, float]
    source: str
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)  # median affine origin of the cohort
    fingerprint: str = ""  # cohort_fingerprint of these patients

    def __len__(self) -> int:
        return len(self.table)


def cohort_fingerprint(root: Path, ids: list[str]) -> str:
    """sha256 over the patients ``ids``: their attribute rows and the bytes of their ct/seg files.

    A cohort rebuilt byte for byte (a phantom cohort from the same seed; nibabel writes gzip without a
    time stamp) keeps its fingerprint, so a training run (or a run committed from another machine)
    resumes on it; any changed patient file or attribute changes it. Reads every file once (about 1 s
    per GB) the first time in a process (:func:`file_sha256`)."""
    root = Path(root)
    table = read_attributes(root).set_index("id", drop=False)
    h = hashlib.sha256()
    for pid in ids:
        h.update(f"{pid}:{table.loc[[pid]].to_csv(index=False)}".encode())
        for name in ("ct.nii.gz", "seg.nii.gz"):
            h.update(f"{name}:{file_sha256(root / 'patients' / pid / name)}".encode())
    return h.hexdigest()[:16]


def file_sha256(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes, remembered for this process while the file keeps its size,
    modification time (ns) and inode: a run start that fingerprints a cohort more than once reads each
    file once."""
    st = os.stat(path)
    return _sha256_of(str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ino)


@functools.lru_cache(maxsize=1 << 16)
def _sha256_of(path: str, size: int, mtime_ns: int, inode: int) -> str:
    """The digest behind :func:`file_sha256`; the size, time and inode arguments only key the cache."""
    return sha256_file(path)


def load_cohort(root: str | Path, grid_shape: tuple[int, int, int], cache_dir: str | Path, *,
                limit: int | None = None, progress: Callable[[int, int], None] | None = None,
                spacing_mm: tuple[float, float, float] | None = None) -> CohortArrays:
    """Load (or memory-map from ``cache_dir``) every patient of the cohort at ``root``.

    Every patient must be on ``grid_shape``; with ``spacing_mm`` (mm), also at that voxel spacing."""
    root = Path(root)
    table = read_attributes(root)
    if limit is not None:
        table = table.iloc[:limit].reset_index(drop=True)
    ids = [str(i) for i in table["id"]]
    missing = [pid for pid in ids if not (root / "patients" / pid / "ct.nii.gz").exists()]
    if missing:
        raise ValueError(f"cohort {root}: {len(missing)} patients lack ct.nii.gz (first: {missing[0]})")
    key = cohort_fingerprint(root, ids)
    cache = Path(cache_dir)
    meta_path = cache / "cache.json"

    def from_cache(meta: dict) -> CohortArrays:
        if spacing_mm is not None and not np.allclose(meta["spacing_mm"], spacing_mm, atol=1e-3):
            raise ValueError(f"cohort {root}: voxel spacing {tuple(meta['spacing_mm'])} mm differs from the "
                             f"model's {tuple(spacing_mm)} mm")
        return CohortArrays(np.load(cache / "ct.npy", mmap_mode="r"), np.load(cache / "seg.npy", mmap_mode="r"),
                            table, tuple(meta["spacing_mm"]), str(root), tuple(meta["origin_mm"]), key)

    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == key and tuple(meta.get("grid_shape", ())) == tuple(grid_shape):
            return from_cache(meta)
    cache.mkdir(parents=True, exist_ok=True)
    n = len(ids)
    ct = np.lib.format.open_memmap(cache / "ct.tmp.npy", mode="w+", dtype=np.int16, shape=(n, *grid_shape))
    seg = np.lib.format.open_memmap(cache / "seg.tmp.npy", mode="w+", dtype=np.uint8, shape=(n, *grid_shape))
    spacing = None
    origins = []
    for i, pid in enumerate(ids):
        vol = read_ct(root / "patients" / pid / "ct.nii.gz")
        lab = read_labels(root / "patients" / pid / "seg.nii.gz")
        if vol.shape != tuple(grid_shape) or lab.shape != tuple(grid_shape):
            raise ValueError(f"{root / 'patients' / pid}: grid {vol.shape} differs from the model's grid "
                             f"{tuple(grid_shape)}; resample the cohort to that grid first")
        if spacing_mm is not None and not np.allclose(vol.spacing_mm, spacing_mm, atol=1e-3):
            got = tuple(round(v, 3) for v in vol.spacing_mm)
            raise ValueError(f"{root / 'patients' / pid}: voxel spacing {got} mm differs from the model's "
                             f"{tuple(spacing_mm)} mm")
        spacing = spacing or vol.spacing_mm
        origins.append(vol.affine[:3, 3])
        ct[i] = np.clip(np.rint(vol.data), -1024, 3071).astype(np.int16)
        seg[i] = lab.data.astype(np.uint8)
        if progress is not None:
            progress(i + 1, n)
    ct.flush()
    seg.flush()
    del ct, seg
    (cache / "ct.tmp.npy").replace(cache / "ct.npy")
    (cache / "seg.tmp.npy").replace(cache / "seg.npy")
    meta = {"key": key, "grid_shape": list(grid_shape), "spacing_mm": list(spacing),
            "origin_mm": np.median(np.array(origins), axis=0).tolist(), "source": str(root), "n": n}
    meta_path.write_text(json.dumps(meta))
    return from_cache(meta)  # memory-mapped, as a later run reads it (the fingerprint, read once)


class PatchSampler:
    """Random (X, Y, Z) patches: with probability ``p_class`` centred on a voxel of a class drawn
    uniformly from the patient's merged classes (small organs as often as large ones, as MONAI's
    RandCropByLabelClasses does), else with ``p_body`` on a body voxel (HU > -500), else anywhere."""

    def __init__(self, data: CohortArrays, patch: tuple[int, int, int], seed: int, p_body: float = 0.9,
                 p_class: float = 0.0, first: int = 0) -> None:
        self.data = data
        #: patients [first, N) are drawn from (the first ones held out)
        self.first = first
        self.patch = tuple(patch)
        self.rng = np.random.default_rng(seed)
        self.p_body = p_body
        self.p_class = p_class

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def _corner(self, i: int) -> tuple[int, int, int]:
        shape = self.data.ct.shape[1:]
        lim = [s - p for s, p in zip(shape, self.patch)]
        if self.p_class > 0 and self.rng.random() < self.p_class:
            sub = np.asarray(self.data.seg[i, ::2, ::2, ::2])
            classes = np.flatnonzero(np.bincount(sub.ravel()))
            classes = classes[classes > 0]
            if len(classes):
                pts = np.argwhere(sub == classes[self.rng.integers(len(classes))]) * 2
                c = pts[self.rng.integers(len(pts))] + self.rng.integers(0, 2, size=3)
                return tuple(int(np.clip(c[k] - self.patch[k] // 2, 0, lim[k])) for k in range(3))
        if self.rng.random() < self.p_body:
            # a body voxel from a coarse grid, then jitter
            sub = np.asarray(self.data.ct[i, ::8, ::8, ::8])
            pts = np.argwhere(sub > -500) * 8
            if len(pts):
                c = pts[self.rng.integers(len(pts))] + self.rng.integers(0, 8, size=3)
                return tuple(int(np.clip(c[k] - self.patch[k] // 2, 0, lim[k])) for k in range(3))
        return tuple(int(self.rng.integers(0, lim[k] + 1)) for k in range(3))

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(ct (B, 1, *patch) float32 HU, seg (B, *patch) int64)."""
        ct, seg, _ = self.batch_with_index(size)
        return ct, seg

    def batch_with_index(self, size: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """As :meth:`batch`, plus each patch's patient (row of ``data.table``), int64 (B,)."""
        cts, segs, idx = [], [], []
        px, py, pz = self.patch
        for _ in range(size):
            i = int(self.rng.integers(self.first, len(self.data)))
            x, y, z = self._corner(i)
            cts.append(np.asarray(self.data.ct[i, x:x + px, y:y + py, z:z + pz], dtype=np.float32))
            segs.append(np.asarray(self.data.seg[i, x:x + px, y:y + py, z:z + pz], dtype=np.int64))
            idx.append(i)
        return torch.from_numpy(np.stack(cts))[:, None], torch.from_numpy(np.stack(segs)), np.asarray(idx, dtype=np.int64)
