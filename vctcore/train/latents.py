"""The joint latents Z = [Z_img, Z_seg] of a cohort, encoded resumably into ``<run>/latents/z.npy``.

The training stage ``latents`` encodes a cohort here with frozen autoencoders (with ``ae`` None,
:func:`encode_cohort` encodes the segmentation half only, Z_seg). The array is a
float32 ``.npy`` memory map, axes (N, C, *latent_shape);
``done.json`` next to it counts the patients encoded so far, in cohort order, so a stopped run
continues where it left off.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from vctcore.models.autoencoders import SegAE, StackedImageAE
from vctcore.models.config import GeneratorConfig
from vctcore.train.data import CohortArrays
from vctcore.train.loop import Progress

#: patients encoded between two flushes of the memory map and its ``done.json``
FLUSH_EVERY = 10


def latents_path(run_dir: Path) -> Path:
    """Where a run keeps its latents: ``<run>/latents/z.npy``."""
    return Path(run_dir) / "latents" / "z.npy"


def latents_done(run_dir: Path) -> int:
    """How many patients of ``run_dir``'s latents are encoded (0 when none are)."""
    path = latents_path(run_dir)
    done_path = path.with_name("done.json")
    return json.loads(done_path.read_text())["done"] if done_path.exists() and path.exists() else 0


def load_latents(run_dir: Path) -> np.ndarray:
    """The encoded latents of ``run_dir`` (N_done, C, *latent), memory-mapped read-only."""
    return np.load(latents_path(run_dir), mmap_mode="r")[:latents_done(run_dir)]


@torch.no_grad()
def encode_cohort(ae: StackedImageAE | None, seg_ae: SegAE, cfg: GeneratorConfig, data: CohortArrays, run_dir: Path,
                  device: torch.device, *, n: int | None = None, progress: Progress | None = None,
                  deadline: float | None = None) -> tuple[int, float]:
    """Encode patients ``[0, n)`` of ``data`` (all when ``n`` is None) into ``run_dir``'s latents.

    With ``ae`` None only the segmentation latent Z_seg is encoded (``cfg.seg_ae.latent_channels``
    channels), and the CT is not read.

    Starts after the patients already encoded; stops early, resumably, once ``time.monotonic()``
    passes ``deadline``. Returns (patients encoded, seconds this call spent).
    """
    from vctcore.models.encode import encode_patient, encode_segmentation

    n = len(data) if n is None else n
    path = latents_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = latents_done(run_dir)
    channels = cfg.latent_channels if ae is not None else cfg.seg_ae.latent_channels
    shape = (len(data), channels, *cfg.latent_shape)
    z = np.lib.format.open_memmap(path, mode="r+" if done else "w+", dtype=np.float32, shape=shape)
    if z.shape != shape:
        raise ValueError(f"{path} holds latents of shape {z.shape}, not the {shape} this run encodes; "
                         f"use a new run directory")
    t0 = time.monotonic()
    done_path = path.with_name("done.json")
    before = float(json.loads(done_path.read_text()).get("seconds", 0.0)) if done and done_path.exists() else 0.0

    def mark(count: int) -> None:
        z.flush()  # the seconds, all calls together, are what a time budget counts (vctcore.train.budget)
        done_path.write_text(json.dumps({"done": count, "seconds": round(before + time.monotonic() - t0, 2)}))

    for i in range(done, n):
        seg = torch.from_numpy(np.asarray(data.seg[i], dtype=np.int64))[None].to(device)
        if ae is None:
            zi = encode_segmentation(seg_ae, seg)
        else:
            ct = torch.from_numpy(np.asarray(data.ct[i], dtype=np.float32))[None, None].to(device)
            zi = encode_patient(ae, seg_ae, ct, seg, cfg)
        z[i] = zi[0].float().cpu().numpy()
        if (i + 1) % FLUSH_EVERY == 0 or i + 1 == n:
            mark(i + 1)
        if progress is not None:
            progress("latents", i + 1, n, {})
        if deadline is not None and time.monotonic() > deadline and i + 1 < n:
            mark(i + 1)
            return i + 1, time.monotonic() - t0
    return max(done, n), time.monotonic() - t0
