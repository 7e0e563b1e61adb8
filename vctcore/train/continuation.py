"""What every continuation of a finished generator shares (``vct continue-diffusion``,
``vct continue-seg-decoder``): the report of where a run stopped, the run directory's ``continue.json``
check, the cohort read through the run's cache, the held-out figure before training (kept for reruns),
the ``training.continuations`` record, and the export of the base generator with one network's weights
replaced."""
from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from vctcore.models.checkpoint import save_module, sha256_file
from vctcore.train.data import CohortArrays, load_cohort
from vctcore.train.loop import Progress

#: continue.json keys a rerun must share with the first run
RUN_KEYS = ("base_files", "cohort_fingerprint", "seed", "val_patients", "steps", "batch_size", "lr")


@dataclass
class ContinuationReport:
    """Where a continuation of ``stage`` stopped, its held-out ``figure`` (e.g. "held-out loss") before and
    after, and the new generator (None until done).

    A run stopped while encoding the cohort has ``encoded < n_patients``, step 0 and no figures yet."""

    stage: str
    figure: str
    step: int
    total: int
    seconds: float
    before: float | None
    after: float | None
    generator_dir: Path | None
    encoded: int = 0
    n_patients: int = 0


def check_run(run_dir: Path, meta: dict, ids: list[str], keys: tuple[str, ...] = RUN_KEYS) -> None:
    """Write ``continue.json``, or check that a rerun continues the same base, cohort (its patients
    ``ids``) and schedule. A run recorded before content fingerprints still matches its own files
    (:func:`vctcore.train.data.same_cohort`)."""
    from vctcore.train.data import same_cohort

    path = run_dir / "continue.json"
    if not path.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(meta, indent=2))
        return
    old = json.loads(path.read_text())
    for key in keys:
        if key == "cohort_fingerprint" and same_cohort(old.get(key), meta.get(key), Path(meta["cohort"]), ids):
            continue
        if old.get(key) != meta.get(key):
            raise ValueError(f"{run_dir} continued another base checkpoint, cohort or schedule ({key} differs); "
                             f"use a new run directory")


def cohort_table(cohort: Path, limit: int | None) -> pd.DataFrame:
    """``cohort``'s attribute table (its first ``limit`` rows when given)."""
    from vctcore.cohort import read_attributes

    table = read_attributes(cohort)
    return table.iloc[:limit] if limit is not None else table


def run_meta(checkpoint: Path, gen, cohort: Path, ids: list[str], **schedule) -> dict:
    """A continuation's ``continue.json``: the base generator ``gen`` loaded from ``checkpoint`` (its files'
    sha256), the cohort and the fingerprint of its patients ``ids``, the run's ``schedule`` (seed, held-out
    patients, steps, batch size, lr, and the run's own options), the start time and package versions."""
    from vctcore.cohort import model_package_versions
    from vctcore.train.data import cohort_fingerprint

    return {"base": str(checkpoint.resolve()), "base_files": gen.checkpoint_sha256, "cohort": str(cohort.resolve()),
            "cohort_fingerprint": cohort_fingerprint(cohort, ids), "n_patients": len(ids), **schedule,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "package_versions": model_package_versions()}


def cohort_arrays(gen, cohort: Path, run_dir: Path, n: int, progress: Progress | None) -> CohortArrays:
    """The first ``n`` patients of ``cohort`` on the generator ``gen``'s grid and spacing, read through the
    training stages' cache in ``run_dir/cache`` (:func:`vctcore.train.data.load_cohort`), reading progress
    reported as stage "cohort"."""
    report = None if progress is None else (lambda i, total: progress("cohort", i, total, {}))
    return load_cohort(cohort, tuple(gen.cfg.grid_shape), run_dir / "cache", limit=n, progress=report,
                       spacing_mm=tuple(gen.cfg.spacing_mm))


def continuation_record(stage: str, meta: dict, seconds: float, device: str, command: str, run_dir: Path,
                        **fields) -> dict:
    """The ``training.continuations`` entry of a finished run: schedule and cohort from ``meta``
    (``continue.json``), wall ``seconds``, the device's description, then the run's own ``fields``
    (held-out figures before and after, the replaced file's sha256 in the base generator, ...)."""
    return {"stage": stage, **{k: meta[k] for k in ("steps", "batch_size", "lr", "seed")}, "seconds": round(seconds, 1),
            "device": device, **{k: meta[k] for k in ("cohort", "cohort_fingerprint", "n_patients", "val_patients")},
            **fields, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "package_versions": meta["package_versions"],
            "method": f"{command} (run directory {run_dir.resolve()})"}


def held_out_before(run_dir: Path, name: str, compute: Callable[[], float]) -> float:
    """The held-out figure ``name`` before training: computed once, then read back on every rerun
    (``latents/val_before.json``), so a resumed run reports the same starting point."""
    path = run_dir / "latents" / "val_before.json"
    if path.exists():
        return json.loads(path.read_text())[name]
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({name: value}))
    return value


def export_continuation(base: Path, run_dir: Path, module: torch.nn.Module, file_name: str, kind: str, cfg: dict,
                        record: dict, *, half: bool, support: dict | None = None,
                        drop_metrics: tuple[str, ...] = ("fidelity.",)) -> Path:
    """``run_dir/generator``: ``base`` with ``module``'s weights as ``file_name`` (float16 where ``half``,
    as the export stores the diffusion), ``record`` appended to the manifest's ``training.continuations``,
    the attribute ``support`` replaced when given, and the metrics whose names start with one of
    ``drop_metrics`` removed from ``metrics.json`` and the rewritten model card (they described the old
    network; rerun ``vct evaluate-generator``)."""
    from vctcore.train.export import WEIGHT_FILES, _store_half
    from vctcore.train.model_card import write_model_card

    out = run_dir / "generator"
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(base, tmp, ignore=shutil.ignore_patterns("fidelity", "model_card.md"))
    weights = run_dir / "models" / file_name
    save_module(module, weights, kind=kind, config=cfg)
    if half:
        _store_half(weights, tmp / file_name)
    else:
        shutil.copyfile(weights, tmp / file_name)
    manifest = json.loads((tmp / "manifest.json").read_text())
    manifest.setdefault("training", {}).setdefault("continuations", []).append(record)
    if support is not None:
        manifest["support"] = support
    manifest["files"] = {f: sha256_file(tmp / f) for f in ("config.json", *WEIGHT_FILES) if (tmp / f).exists()}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    metrics_path = tmp / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    metrics = {k: v for k, v in metrics.items() if not k.startswith(drop_metrics)}
    notes = (tmp / "notes.md").read_text() if (tmp / "notes.md").exists() else ""
    write_model_card(tmp, metrics, notes=notes)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out
