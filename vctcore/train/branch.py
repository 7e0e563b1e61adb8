"""Start a run from the finished stages of an earlier one (``vct train --from-run OLD``).

Changing a network (say, a wider diffusion U-Net) needs a new run directory, but the stages that do
not depend on it need not be retrained. :func:`branch_run` brings into the new run every stage of
the old one whose inputs are unchanged: same cohort and seed, and the same config sections the stage
depends on (:data:`STAGE_DEPENDS`). Stages downstream of a changed one are left to train. Stage
files are copied (a resumed stage rewrites them); the read-only data cache (GBs) is hard-linked
where the file system allows.

The branch records its source in ``<new run>/branched_from.json`` (a generator directory by its files'
sha256; a brought stage's ``budget.json`` decisions come along); resuming a branch brings back only the
brought files the run lacks, so a run committed without them resumes in a fresh checkout.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vctcore.models.config import GeneratorConfig, normalised_config, without_sampling
from vctcore.train.budget import budget_path, read_budget

#: config sections (besides grid_shape and spacing_mm) that each stage's result depends on,
#: including through the stages it reads
STAGE_DEPENDS: dict[str, tuple[str, ...]] = {
    "image_ae_1": ("image_ae",),
    "image_ae_2": ("image_ae",),
    "seg_ae": ("seg_ae",),
    "latents": ("image_ae", "seg_ae"),
    "seg_decoder": ("seg_ae",),
    "diffusion": ("image_ae", "seg_ae", "diffusion"),
    "post": ("image_ae", "seg_ae", "post"),  # seg_ae: a post with seg_input reads the decoded segmentation
}
GRID_KEYS = ("grid_shape", "spacing_mm")


def _link_or_copy(src: Path, dst: Path, link: bool) -> None:
    """Copy ``src`` (file or tree) to ``dst``; hard-link instead when ``link`` and the file system allows
    (only for files no stage writes again: the data cache)."""
    if src.is_dir():
        dst.mkdir(parents=True, exist_ok=True)
        for child in src.iterdir():
            _link_or_copy(child, dst / child.name, link)
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        return
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


def link_cache(old_run: str | Path, new_run: str | Path) -> None:
    """Give a new run the old run's data cache (hard links; the cache validates itself on load)."""
    old_run, new_run = Path(old_run), Path(new_run)
    if (old_run / "cache").exists() and not (new_run / "run.json").exists():
        _link_or_copy(old_run / "cache", new_run / "cache", link=True)


def reusable_stages(old_meta: dict[str, Any], cfg: GeneratorConfig) -> list[str]:
    """Stages of the old run (``run.json`` contents) whose config inputs equal ``cfg``'s."""
    # the diffusion's sampling defaults do not change what its training made
    old = without_sampling(normalised_config(old_meta["config"]))
    new = without_sampling(json.loads(json.dumps(cfg.to_dict())))
    keep = []
    for stage, sections in STAGE_DEPENDS.items():
        keys = GRID_KEYS + sections
        if all(old.get(k) == new.get(k) for k in keys):
            keep.append(stage)
    return keep


def branch_run(old_run: str | Path, new_run: str | Path, cfg: GeneratorConfig, cohort_fingerprint: str,
               seed: int, warm_start: Sequence[str], leave: Sequence[str] = ()) -> list[str]:
    """Bring the reusable finished stages of ``old_run`` into the new (empty) ``new_run``, except those in
    ``leave`` (stages trained on from the old weights: :mod:`vctcore.train.train_on`), which must be reusable.

    Returns the stages brought over; ``warm_start`` (stages that start from the old run's weights) is
    recorded beside them in ``branched_from.json``. ``cohort_fingerprint`` is that of the new run's cohort
    (:func:`vctcore.train.data.cohort_fingerprint`). Rerunning with the same
    ``old_run`` (to resume) brings nothing new, only the brought files the new run lacks (a run committed
    without them). Refuses a run trained on another cohort or seed (not a generator: see
    :mod:`vctcore.train.from_generator`), and a ``new_run`` started otherwise (two histories).
    """
    old_run, new_run = Path(old_run), Path(new_run)
    meta_path = old_run / "run.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{old_run}: not a training run (no run.json)")
    old_meta = json.loads(meta_path.read_text())
    source = _source_id(old_run, old_meta)
    marker = new_run / "branched_from.json"
    if marker.exists():
        mark = json.loads(marker.read_text())
        if mark.get("source", mark["run"]) == source:
            _bring(old_run, new_run, mark["stages"])  # what a fresh checkout of a committed run lacks
            return []
    if (new_run / "run.json").exists():
        raise ValueError(f"{new_run} has already started without {old_run}; --from-run needs a new run directory")
    # a published generator's networks are a starting point on any cohort; a run's stages are reused
    # only on the cohort and seed they were trained with
    if "generator" not in old_meta and (
            old_meta["cohort_fingerprint"] != cohort_fingerprint or old_meta["seed"] != seed):
        raise ValueError(f"{old_run} was trained on another cohort or seed ({old_meta['cohort']}, "
                         f"seed {old_meta['seed']}); its stages cannot be reused")
    reusable = reusable_stages(old_meta, cfg)
    changed = [s for s in leave if s not in reusable]
    if changed:
        raise ValueError(f"--stages {','.join(changed)}: this preset changes what {old_run} trained there; train a "
                         f"generator's stages on with its own config, or retrain them with --warm-start")
    brought = _bring(old_run, new_run, [s for s in reusable if s not in leave])
    b = read_budget(old_run)
    if b is not None:
        # a brought stage the old run's time budget shortened is finished at its shortened length
        b["stages"] = {k: v for k, v in b.get("stages", {}).items() if k in brought}
        budget_path(new_run).write_text(json.dumps(b, indent=2))
    marker.write_text(json.dumps(
        {"run": str(old_run.resolve()), "source": source, "stages": brought, "warm_start": list(warm_start),
         "old_config": old_meta["config"], **({"generator": old_meta["generator"]} if "generator" in old_meta else {})},
        indent=2))
    return brought


def _source_id(old_run: Path, old_meta: dict[str, Any]) -> str:
    """What a branch came from: a generator by its files' sha256 (its stage files are written inside the new
    run, so the path moves with it), a run by its path."""
    if "generator" in old_meta:
        return "generator:" + json.dumps(old_meta["generator"]["files"], sort_keys=True)
    return str(old_run.resolve())


def _bring(old_run: Path, new_run: Path, stages: Sequence[str]) -> list[str]:
    """Copy the finished ``stages`` of ``old_run`` (model, state, log; the latents folder) into ``new_run``
    where it lacks them; returns the stages the old run had finished."""
    brought = []
    for stage in stages:
        files = [old_run / "models" / f"{stage}.safetensors", old_run / "state" / f"{stage}.pt",
                 old_run / "logs" / f"{stage}.csv"]
        if stage == "latents":
            files = [old_run / "latents"]
        if not files[0].exists():
            continue
        for f in files:
            if f.exists():
                _link_or_copy(f, new_run / f.relative_to(old_run), link=False)
        brought.append(stage)
    return brought
