"""Run a trial from its configuration into a trial directory (resumable), with provenance.

``run_trial(config, out)`` dispatches on the design (:mod:`vctcore.trial.paper`, :mod:`vctcore.trial.audit`),
makes and caches patients through a :class:`vctcore.trial.store.PatientStore`, and writes the directory
:mod:`vctcore.trial.result` describes. A killed run restarts from its caches: phantoms, reconstructed and
synthetic patients and measurements already made are reused, the reference model is not retrained.
``DIR/config.json`` pins the directory to one configuration: another configuration is refused. The executor
(:mod:`vctcore.executors`: the config's ``executor``, or the caller's) is not part of it: it changes no result.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from vctcore.cohort import _atomic_text
from vctcore.executors import ExecutorSpec, make_executor
from vctcore.progress import Progress
from vctcore.provenance import provenance, utc_now
from vctcore.trial.config import TrialConfig, load_config, trial_executor
from vctcore.trial.result import TrialResult, write_result
from vctcore.trial.stages import Stages
from vctcore.trial.store import PatientStore, digest

CONFIG_JSON = "config.json"


class TrialError(ValueError):
    """A trial that cannot run here (the output directory holds another trial, ...)."""


def default_cache() -> Path:
    from vctcore.workspace import workspace_root

    return workspace_root() / "cache"


def _pin(cfg: TrialConfig, out: Path) -> None:
    pinned = out / CONFIG_JSON
    same = {k: v for k, v in cfg.to_dict().items() if k != "executor"}  # digests from before the key still match
    key = digest(same | {"raw": None, "source": None}, 32)
    if pinned.exists():
        old = json.loads(pinned.read_text())
        if old.get("digest") != key:
            raise TrialError(f"{out} holds another trial ({old.get('name')!r}, another configuration); "
                             "choose a new --out or delete that directory")
        return
    out.mkdir(parents=True, exist_ok=True)
    _atomic_text(pinned, json.dumps({"name": cfg.name, "digest": key, "config": cfg.to_dict()}, indent=2))


def _provenance(cfg: TrialConfig, ran: dict[str, Any], started: str, seconds: dict[str, float],
                wall: float) -> dict[str, Any]:
    model, gen = ran["model"], ran["generator"]
    card = model.card
    seeds = {"generator": cfg.generator.seed, "statistics": cfg.statistics.seed,
             **({"split": cfg.split.seed} if cfg.split else {}),
             **({"phantoms": cfg.phantoms.seed} if cfg.phantoms else {}),
             **({"model": cfg.model.seed} if cfg.model and cfg.model.path is None else {})}
    return {
        "model": {"name": card.name, "target": card.target, "format": card.format,
                  "weights_sha256": card.weights_sha256, "path": str(getattr(model, "path", "")),
                  "card": card.to_dict()},
        "generator": {"path": str(gen.path), "sha256": gen.checkpoint_sha256, "device": str(gen.device),
                      "steps": cfg.generator.steps, "guidance": cfg.generator.guidance, "seed": cfg.generator.seed},
        **provenance(seeds=seeds), "started_utc": started, "finished_utc": utc_now(),
        "stage_seconds": {k: round(v, 1) for k, v in seconds.items()}, "wall_seconds": round(wall, 1),
        "executor": ran["executor"],
    }


def run_trial(config: TrialConfig | str | os.PathLike, out: str | os.PathLike, *,
              progress: Progress | None = None, cache: str | os.PathLike | None = None,
              executor: ExecutorSpec | None = None) -> TrialResult:
    """Run (or resume) the trial ``config`` into ``out``; returns the finished :class:`TrialResult`.

    ``cache``: the patient store's root (default: the config's ``cache``, else ``<workspace>/cache``).
    ``executor``: where patients are built, made and measured (default: the config's, :func:`trial_executor`); the
    results are the same for every executor.
    ``progress(done, total, message)`` (:data:`vctcore.progress.Progress`) is called as patients are made,
    measured and predicted; each stage counts from 0 and its messages start with "<stage>: "
    (:func:`vctcore.progress.split_stage` takes them apart).
    """
    from vctcore.trial.audit import run_audit
    from vctcore.trial.examples import write_examples
    from vctcore.trial.paper import run_paper

    cfg = config if isinstance(config, TrialConfig) else load_config(config)
    out = Path(out)
    _pin(cfg, out)
    started = utc_now()
    t0 = time.perf_counter()
    stages = Stages(out, progress)
    with make_executor(trial_executor(cfg, executor)) as ex:
        store = PatientStore(Path(cache) if cache is not None else cfg.cache or default_cache(), executor=ex,
                             device=cfg.generator.device)
        ran = (run_paper if cfg.design == "paper" else run_audit)(cfg, out, store, stages)
        ran["executor"] = ex.describe()
    with stages.stage("examples"):
        write_examples(out, ran["predictions"])
    summary = {"name": cfg.name, "design": cfg.design, "description": cfg.raw.get("description", ""),
               "config": cfg.to_dict(), **ran["summary"],
               "cache": str(store.root),
               "provenance": _provenance(cfg, ran, started, stages.seconds, time.perf_counter() - t0)}
    write_result(out, summary, ran["predictions"], ran["tables"])
    (out / "progress.json").unlink(missing_ok=True)
    return TrialResult.load(out)
