"""Training a finished generator's networks on: ``vct train --from-run GENERATOR_DIR --stages STAGE[,STAGE]``.

From a generator directory (:mod:`vctcore.train.from_generator`), ``--stages`` names the stages to train
on (:data:`TRAIN_ON_STAGES`): more steps, or another cohort on the generator's grid. Every other stage comes
over finished; the ``latents`` stage encodes the cohort with the generator's autoencoders when the diffusion
trains on. A trained-on stage starts from the generator's weights (the diffusion from its EMA weights and
latent statistics, its EMA without warm-up; the segmentation decoder over the frozen encoder and codebook,
so the diffusion's latents stay valid) and runs its own stage step for ``--steps`` steps with a 100-step
warm-up and a cosine decay to 10 % of ``--lr``. The first ``--val-patients`` patients are held out of its
training: a held-out figure (:mod:`vctcore.train.held_out`) is recorded before and after.

The run exports the generator with only the trained-on networks' files replaced (the others byte for
byte), one ``training.continuations`` record per stage in its manifest and card, the attribute support
widened by the cohort, and the metrics the new networks invalidate dropped (rerun ``vct evaluate-generator``).
"""
from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from vctcore.models.checkpoint import load_module, save_module, sha256_file
from vctcore.models.config import GeneratorConfig
from vctcore.provenance import provenance
from vctcore.train.held_out import FIGURES, read_held_out

if TYPE_CHECKING:
    from vctcore.train.data import CohortArrays

#: stages a generator's networks train on, with the generator file each one replaces
TRAIN_ON_STAGES = {"diffusion": "diffusion.safetensors", "seg_decoder": "seg_ae.safetensors"}
#: per stage, the base generator's metrics that no longer hold after it
DROPPED_METRICS = {"diffusion": ("fidelity.",), "seg_decoder": ("fidelity.", "reconstruction.")}
#: ``<run>/train_on.json``: the stages, held-out patients and base files a rerun must share
RECORD = "train_on.json"


@dataclass(frozen=True)
class TrainOn:
    """What to train on: ``stages`` (of :data:`TRAIN_ON_STAGES`), the first ``val_patients`` patients held
    out, and the schedule's ``steps``, ``batch_size`` and peak ``lr`` (None: the preset's)."""

    stages: tuple[str, ...]
    val_patients: int = 8
    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None

    def check(self, n_patients: int) -> None:
        """ValueError naming what does not fit: an unknown stage, a non-positive number, or a cohort of
        ``n_patients`` too small to hold out ``val_patients``."""
        unknown = [s for s in self.stages if s not in TRAIN_ON_STAGES]
        if unknown:
            raise ValueError(f"--stages {','.join(unknown)}: a generator's stages that train on are "
                             f"{', '.join(TRAIN_ON_STAGES)}")
        if any(v is not None and v <= 0 for v in (self.steps, self.batch_size, self.lr)) or self.val_patients < 1:
            raise ValueError(f"steps, batch size and val patients must be at least 1 and lr positive (got "
                             f"{self.steps}, {self.batch_size}, {self.val_patients}, {self.lr})")
        if n_patients <= self.val_patients:
            raise ValueError(f"the cohort has {n_patients} patients: too few to hold out {self.val_patients} "
                             f"and train on the rest")


def plan(cfg: GeneratorConfig, on: TrainOn) -> GeneratorConfig:
    """``cfg`` with each trained-on stage's schedule given ``on``'s steps, batch size and lr and a cosine
    learning rate, every patient encoded (no ``latents`` cap) and no time budget (``--max-minutes`` stops
    a run resumably)."""
    schedules = dict(cfg.schedules)
    for stage in on.stages:
        base = schedules.get(stage) or replace(schedules["seg_ae"], lr_schedule="constant")
        schedules[stage] = replace(base, steps=on.steps or base.steps, batch_size=on.batch_size or base.batch_size,
                                   lr=on.lr or base.lr, lr_schedule="cosine")
    schedules.pop("latents", None)
    return replace(cfg, schedules=schedules, time_budget=None)


def check_cohort(table: pd.DataFrame, cfg: GeneratorConfig, cohort: Path) -> None:
    """ValueError when the cohort's attribute ``table`` lacks an attribute the diffusion is conditioned on."""
    missing = [a for a in cfg.diffusion.condition_on if a not in table]
    if missing:
        raise ValueError(f"{cohort / 'attributes.csv'} lacks the conditioning attribute(s) {', '.join(missing)}")


def check_record(run_dir: Path, on: TrainOn, base_files: dict[str, str]) -> None:
    """Write ``<run>/train_on.json``, or refuse a rerun that trains other stages, holds out other patients
    or starts from another generator (``base_files``: its files' sha256)."""
    meta = {"stages": list(on.stages), "val_patients": on.val_patients, "base_files": base_files}
    path = run_dir / RECORD
    if not path.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(meta, indent=2))
        return
    old = json.loads(path.read_text())
    for key, value in meta.items():
        if old.get(key) != value:
            raise ValueError(f"{run_dir} trained on other stages, held-out patients or another generator "
                             f"({key} differs); use a new run directory")


def merged_support(old: dict, table: pd.DataFrame, names: Sequence[str]) -> dict:
    """The base generator's training ``support`` widened by a cohort's attributes ``names`` in ``table``."""
    from vctcore.train.export import attribute_support

    out = copy.deepcopy(old)
    for name, sup in attribute_support(table, tuple(names)).items():
        if name not in out:
            out[name] = sup
        elif "categories" in sup:
            out[name]["categories"] = sorted(set(out[name].get("categories", [])) | set(sup["categories"]))
        else:
            out[name] = {"min": min(out[name]["min"], sup["min"]), "max": max(out[name]["max"], sup["max"])}
    return out


def continuation_record(run_dir: Path, stage: str, base: Path, data: CohortArrays, device: str) -> dict:
    """The ``training.continuations`` entry of a trained-on ``stage``: its schedule, seed, wall seconds (its
    log), ``device``, the cohort ``data``, held-out patients and figure before -> after, the replaced file's
    sha256 in the ``base`` generator, the provenance record and the command."""
    from vctcore.train.export import _stage_log_summary

    run = json.loads((run_dir / "run.json").read_text())
    sch = GeneratorConfig.from_dict(run["config"]).schedules[stage]
    on = json.loads((run_dir / RECORD).read_text())
    held, name = read_held_out(run_dir)[stage], FIGURES[stage]
    digits = 5 if stage == "diffusion" else 4
    file = TRAIN_ON_STAGES[stage]
    return {"stage": stage, "steps": sch.steps, "batch_size": sch.batch_size, "lr": sch.lr, "seed": run["seed"],
            "seconds": round(_stage_log_summary(run_dir)[stage]["seconds"], 1), "device": device,
            "cohort": run["cohort"], "cohort_fingerprint": run["cohort_fingerprint"], "n_patients": len(data),
            "val_patients": on["val_patients"], f"{name}_before": round(held["before"], digits),
            f"{name}_after": round(held["after"], digits), f"base_{Path(file).stem}_sha256": on["base_files"].get(file),
            **provenance(seeds={"run": run["seed"]}),
            "method": f"vct train --from-run {base.resolve()} --stages {stage} (run directory {run_dir.resolve()})"}


def _write_weights(run_dir: Path, stage: str, cfg: GeneratorConfig, dst: Path) -> None:
    """The trained-on ``stage``'s network as the generator file ``dst``, its header carrying the generator's
    ``cfg`` (the diffusion stored float16, as the export stores it)."""
    from vctcore.models.diffusion import LatentDiffusion
    from vctcore.train.export import _store_half
    from vctcore.train.stages import tuned_seg_ae_from_run

    models = run_dir / "models"
    if stage == "seg_decoder":
        save_module(tuned_seg_ae_from_run(models, cfg), dst, kind="seg_ae", config=cfg.to_dict())
        return
    dm = LatentDiffusion(cfg.diffusion, cfg.latent_channels)
    load_module(dm, models / "diffusion.safetensors", kind="diffusion")
    full = save_module(dm, dst.with_name(dst.name + ".fp32"), kind="diffusion", config=cfg.to_dict())
    _store_half(full, dst)
    full.unlink()


def export_trained_on(run_dir: Path, base: Path, data: CohortArrays, device: str) -> Path:
    """``<run>/generator``: the ``base`` generator with the trained-on stages' files replaced, a
    ``training.continuations`` record per stage, the support widened by the run's cohort (diffusion) and
    the metrics those networks invalidate dropped from ``metrics.json`` and the rewritten model card."""
    from vctcore.train.export import WEIGHT_FILES
    from vctcore.train.model_card import write_model_card

    stages = json.loads((run_dir / RECORD).read_text())["stages"]
    out = run_dir / "generator"
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(base, tmp, ignore=shutil.ignore_patterns("fidelity", "model_card.md"))
    cfg = GeneratorConfig.from_dict(json.loads((base / "config.json").read_text()))
    manifest = json.loads((tmp / "manifest.json").read_text())
    changed = [f for f, digest in manifest.get("files", {}).items() if sha256_file(tmp / f) != digest]
    if changed or manifest.get("files") != json.loads((run_dir / RECORD).read_text())["base_files"]:
        raise ValueError(f"{base} changed since this run started from it ({', '.join(changed) or 'manifest.json'}); "
                         f"use a new run directory")
    drop: tuple[str, ...] = ()
    for stage in stages:
        _write_weights(run_dir, stage, cfg, tmp / TRAIN_ON_STAGES[stage])
        manifest.setdefault("training", {}).setdefault("continuations", []).append(
            continuation_record(run_dir, stage, base, data, device))
        drop += DROPPED_METRICS[stage]
    if "diffusion" in stages:
        manifest["support"] = merged_support(manifest.get("support", {}), data.table, cfg.diffusion.condition_on)
    manifest["files"] = {f: sha256_file(tmp / f) for f in ("config.json", *WEIGHT_FILES) if (tmp / f).exists()}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    metrics_path = tmp / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    notes = (tmp / "notes.md").read_text() if (tmp / "notes.md").exists() else ""
    write_model_card(tmp, {k: v for k, v in metrics.items() if not k.startswith(drop)}, notes=notes)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out
