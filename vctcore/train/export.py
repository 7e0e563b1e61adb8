"""Assemble a finished run into a generator checkpoint directory.

    generator/config.json          GeneratorConfig (rebuilds every network)
    generator/image_ae.safetensors stacked image autoencoder
    generator/seg_ae.safetensors   segmentation autoencoder
    generator/diffusion.safetensors conditional latent diffusion (EMA weights) + latent statistics
    generator/post.safetensors     post-processing U-Net
    generator/manifest.json        sha256 of every file, training provenance, attribute support
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vctcore.models.checkpoint import save_module, sha256_file
from vctcore.models.config import GeneratorConfig
from vctcore.provenance import read_versions
from vctcore.train.budget import read_budget
from vctcore.train.data import CohortArrays
from vctcore.train.stages import image_ae_from_run, tuned_seg_ae_from_run
from vctcore.train.warm_start import read_warm_starts

WEIGHT_FILES = ("image_ae.safetensors", "seg_ae.safetensors", "diffusion.safetensors", "post.safetensors")


def attribute_support(table: pd.DataFrame, names: tuple[str, ...]) -> dict[str, dict]:
    """Training support per conditioning attribute of a cohort's attribute ``table``: categories seen, or
    [min, max]."""
    out: dict[str, dict] = {}
    for name in names:
        if name not in table:
            continue
        col = table[name]
        if not pd.api.types.is_numeric_dtype(col):
            out[name] = {"categories": sorted(str(v) for v in col.dropna().unique())}
        else:
            out[name] = {"min": float(col.min()), "max": float(col.max())}
    return out


def _stage_log_summary(run_dir: Path) -> dict[str, dict]:
    summary = {}
    for log in sorted((run_dir / "logs").glob("*.csv")):
        with open(log) as fh:
            rows = list(csv.DictReader(fh))
        if rows:
            last = rows[-1]
            tail = rows[-min(50, len(rows)):]
            summary[log.stem] = {"steps": int(last["step"]), "seconds": float(last["seconds"]),
                                 "final_loss_mean50": float(np.mean([float(r["loss"]) for r in tail]))}
    return summary


def _store_half(src: Path, dst: Path) -> None:
    """Copy a weights file storing its large float32 tensors as float16 (half the size to commit).

    Loading casts them back to the module's dtype (``load_state_dict`` copies across dtypes); the
    rounding (relative 5e-4) is below what bf16 sampling already does. Tensors whose values would
    overflow float16, and small ones (normalisation statistics), stay float32.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as fh:
        meta = dict(fh.metadata() or {})
        tensors = {}
        for k in fh.keys():
            t = fh.get_tensor(k)
            if t.dtype == torch.float32 and t.numel() > 1024 and float(t.abs().max()) < 6e4:
                t = t.to(torch.float16)
            tensors[k] = t.contiguous()
    meta["stored_dtype"] = "float16"
    save_file(tensors, str(dst), metadata=meta)


def _branch_provenance(run_dir: Path) -> dict:
    """``branched_from`` (the run or generator the run started from, the stages it brought and warm-started)
    and ``warm_start`` (what each warm-started stage kept: :func:`vctcore.train.warm_start.read_warm_starts`)."""
    out: dict = {}
    marker = run_dir / "branched_from.json"
    if marker.exists():
        mark = json.loads(marker.read_text())
        out["branched_from"] = {k: mark[k] for k in ("run", "stages", "warm_start", "generator") if k in mark}
    if warm := read_warm_starts(run_dir):
        out["warm_start"] = warm
    return out


def run_provenance(run: dict) -> dict:
    """The provenance record of a run's start as its ``run.json`` holds it (``created_utc``, ``versions``,
    ``machine``, ``seeds``: :func:`vctcore.provenance.provenance`). A run started by older code names the
    time ``started`` (local) and the versions ``package_versions``: both are read, under the new keys."""
    out = {k: run[k] for k in ("created_utc", "machine", "seeds") if k in run}
    if "created_utc" not in out and "started" in run:
        out["started"] = run["started"]
    return {**out, "versions": read_versions(run)}


def export_generator(run_dir: Path, out: Path, data: CohortArrays | None = None) -> Path:
    """Write the generator directory ``out`` from the finished stages of ``run_dir``."""
    run = json.loads((run_dir / "run.json").read_text())
    cfg = GeneratorConfig.from_dict(run["config"])
    models = run_dir / "models"
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_module(image_ae_from_run(models, cfg), tmp / "image_ae.safetensors", kind="image_ae", config=cfg.to_dict())
    # the fine-tuned decoder (same encoder and codebook) when the preset has that stage
    save_module(tuned_seg_ae_from_run(models, cfg), tmp / "seg_ae.safetensors", kind="seg_ae", config=cfg.to_dict())
    _store_half(models / "diffusion.safetensors", tmp / "diffusion.safetensors")
    shutil.copyfile(models / "post.safetensors", tmp / "post.safetensors")
    (tmp / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    cache_meta = json.loads((run_dir / "cache" / "cache.json").read_text())
    manifest = {
        "format": "vct-generator/1",
        "preset": cfg.name,
        "grid_shape": list(cfg.grid_shape),
        "spacing_mm": list(cfg.spacing_mm),
        "origin_mm": cache_meta.get("origin_mm", [0.0, 0.0, 0.0]),
        "training": {"cohort": run["cohort"], "cohort_fingerprint": run["cohort_fingerprint"],
                     "n_patients": cache_meta.get("n"), "seed": run["seed"], **run_provenance(run),
                     "stages": _stage_log_summary(run_dir),
                     **({"time_budget": budget} if (budget := read_budget(run_dir)) else {}),
                     **_branch_provenance(run_dir)},
        "support": attribute_support(data.table, cfg.diffusion.condition_on) if data is not None
        else run.get("support", {}),
        "files": {f: sha256_file(tmp / f) for f in ("config.json", *WEIGHT_FILES)},
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out
