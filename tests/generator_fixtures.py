"""A tiny but real generator for tests: 6 phantoms at half the default resolution and a miniature
preset, trained in seconds."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

import numpy as np

from vctcore.cohort import CohortWriter
from vctcore.phantom.builder import DEFAULT_GRID, PhantomGrid, build_phantom
from vctcore.volume import CTVolume, LabelMap

#: the default grid down-sampled 2x per axis (phantoms are built on the default grid, where their
#: composition calibration is exact, then block-averaged)
TINY_GRID = PhantomGrid(shape=(64, 48, 136), spacing_mm=(12.0, 12.0, 16.0))

TINY_PRESET = {
    "name": "tiny",
    "grid_shape": list(TINY_GRID.shape),
    "spacing_mm": list(TINY_GRID.spacing_mm),
    "image_ae": {"levels": [
        {"in_channels": 1, "channels": [8], "num_res_layers": 1, "embedding_dim": 4, "num_embeddings": 64},
        {"in_channels": 4, "channels": [16], "num_res_layers": 1, "embedding_dim": 2, "num_embeddings": 64}]},
    "seg_ae": {"level": {"in_channels": 17, "channels": [8, 16], "num_res_layers": 1, "embedding_dim": 2,
                         "num_embeddings": 64}},
    "diffusion": {"channels": [16, 32], "patch_size": 1, "attention_levels": [False, True], "num_head_channels": 16,
                  "norm_num_groups": 8, "sample_steps": 4, "guidance_scale": 2.0},
    "post": {"channels": [4, 8]},
    "schedules": {
        "image_ae_1": {"steps": 6, "batch_size": 1, "patch": [32, 32, 32], "lr": 0.001, "checkpoint_every": 2,
                       "adversarial_weight": 0.01, "adversarial_start": 3},
        "image_ae_2": {"steps": 4, "batch_size": 1, "patch": [32, 32, 32], "checkpoint_every": 2},
        "seg_ae": {"steps": 4, "batch_size": 1, "patch": [32, 32, 32], "checkpoint_every": 2},
        "seg_decoder": {"steps": 2, "batch_size": 1, "patch": [32, 32, 32], "checkpoint_every": 2},
        "diffusion": {"steps": 6, "batch_size": 2, "checkpoint_every": 2},
        "post": {"steps": 3, "batch_size": 1, "patch": [32, 32, 32], "checkpoint_every": 2},
    },
}

ROWS = [
    {"sex": "M", "age_years": 45, "height_cm": 178, "weight_kg": 80, "bfp_pct": 24, "mmp_pct": 38, "bone_density_hu": 170},
    {"sex": "F", "age_years": 62, "height_cm": 160, "weight_kg": 68, "bfp_pct": 38, "mmp_pct": 28, "bone_density_hu": 120},
    {"sex": "M", "age_years": 30, "height_cm": 185, "weight_kg": 86, "bfp_pct": 22, "mmp_pct": 40, "bone_density_hu": 210},
    {"sex": "F", "age_years": 25, "height_cm": 168, "weight_kg": 58, "bfp_pct": 28, "mmp_pct": 33, "bone_density_hu": 220},
    {"sex": "M", "age_years": 70, "height_cm": 172, "weight_kg": 72, "bfp_pct": 27, "mmp_pct": 33, "bone_density_hu": 110},
    {"sex": "F", "age_years": 50, "height_cm": 164, "weight_kg": 85, "bfp_pct": 42, "mmp_pct": 27, "bone_density_hu": 150},
]


def write_tiny_cohort(root: Path) -> Path:
    writer = CohortWriter(root, {"maker": "tests.generator_fixtures"})
    records = []
    for i, row in enumerate(ROWS):
        pid = f"P{i:04d}"
        ph = build_phantom(row, seed=100 + i, grid=DEFAULT_GRID)
        ct, seg = _half(ph.ct, ph.seg)
        writer.add(pid, ct=ct, seg=seg)
        records.append({"id": pid, **row})
    writer.write_attributes(pd.DataFrame(records))
    return root


def _half(ct: CTVolume, seg: LabelMap) -> tuple[CTVolume, LabelMap]:
    """2x down-sampling: block mean of HU, top-left-front voxel of each block for labels."""
    x, y, z = (s // 2 for s in ct.shape)
    hu = ct.data.astype(np.float32).reshape(x, 2, y, 2, z, 2).mean(axis=(1, 3, 5))
    affine = ct.affine.copy()
    affine[:3, :3] *= 2
    return CTVolume(hu, affine), LabelMap(seg.data[::2, ::2, ::2], affine, seg.names)


def write_tiny_preset(path: Path) -> Path:
    path.write_text(yaml.safe_dump(TINY_PRESET))
    return path


def flip_byte(path: Path, offset: int = -3) -> None:
    """Corrupt a model file in place: invert one byte (near the end: inside the tensor data)."""
    blob = bytearray(path.read_bytes())
    blob[offset] ^= 0xFF
    path.write_bytes(bytes(blob))


def write_untrained_segmenter(path: Path) -> Path:
    """A small segmentation U-Net saved untrained at ``path`` (every evaluation stage runs; its figures are
    those of a random segmentation)."""
    from vctcore.checkers.segmenter import SegmenterConfig, SegUNet, save_segmenter

    save_segmenter(SegUNet(SegmenterConfig(channels=(4, 8, 16))), path, {"training": {"note": "untrained"}})
    return path


def evaluate_args(tiny: dict, seg: Path, out: Path, n: int = 3) -> tuple[str, ...]:
    """``vct evaluate-generator`` arguments for the tiny generator (``tiny``: conftest.tiny_generator) on ``n``
    of its training phantoms."""
    return ("evaluate-generator", "--checkpoint", str(tiny["generator"]), "--real", str(tiny["cohort"]), "--n", str(n),
            "--out", str(out), "--segmenter", "unet", "--segmenter-path", str(seg), "--device", "cpu", "--slices", "4",
            "--quiet")
