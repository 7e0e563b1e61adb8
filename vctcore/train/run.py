"""``train``: run the generator stages in order on a cohort, resumably, and export the generator.

A run directory holds ``run.json`` (preset, cohort, seed and the :mod:`vctcore.provenance` record of its
start: ``created_utc``, ``versions``, ``machine``, ``seeds``), ``state/`` (resumable
training state), ``models/`` (finished stages), ``latents/``, ``logs/<stage>.csv`` and, once every
stage is done, ``generator/`` (the checkpoint ``Generator.from_pretrained`` reads).

A resumed run must have the same architecture, cohort (``data.cohort_fingerprint``) and seed; the schedules,
``precision``, ``time_budget`` and the sampling and decoding defaults (``SAMPLING_KEYS``, ``DECODING_KEYS``)
may change between runs (the old values go to ``run.json``'s ``schedule_history``). The ``latents`` schedule
caps how many patients the diffusion sees (raise it later and encoding continues). ``precision: bf16``
autocasts where the hardware has native bf16, else runs fp32 (:func:`vctcore.devices.autocast`).
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vctcore.models.config import DECODING_KEYS, SAMPLING_KEYS, GeneratorConfig, load_preset, normalised_config, without_sampling
from vctcore.provenance import provenance, utc_now
from vctcore.train.branch import branch_run, link_cache
from vctcore.train.budget import RunBudget, with_budget
from vctcore.train.data import CohortArrays, load_cohort
from vctcore.train.from_generator import FOLDER as GENERATOR_FOLDER
from vctcore.train.from_generator import generator_as_run, is_generator_dir
from vctcore.train.loop import Progress, StageResult
from vctcore.train.stages import OPTIONAL_STAGES, RUNNERS, STAGES, WARM_STAGES, StageContext
from vctcore.train.held_out import read_held_out
from vctcore.train.train_on import TrainOn, check_cohort, check_record, export_trained_on, plan


@dataclass
class TrainReport:
    """Per-stage results of one ``train`` call and the exported generator (None until all stages are done)."""

    results: list[StageResult]
    generator_dir: Path | None
    #: what the time budget decided, one line per stage (empty without a budget)
    budget_lines: list[str] = field(default_factory=list)
    #: stages trained on from a generator: stage -> {"figure", "before", "after"} (vctcore.train.train_on)
    held_out: dict[str, dict] = field(default_factory=dict)


def _distributed(device: torch.device) -> tuple[int, int, Callable]:
    """(rank, world size, module wrapper) from torchrun's environment; DDP when world > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, lambda m: m
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank()
    ids = [device.index] if device.type == "cuda" else None
    return rank, world, lambda m: DistributedDataParallel(m, device_ids=ids)


def _sync(world: int) -> None:
    """Barrier across DDP ranks (no-op in a single process)."""
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _rank_device(dev: torch.device) -> torch.device:
    """Under torchrun each process takes the GPU of its LOCAL_RANK: a bare "cuda" would put every rank on GPU 0."""
    if dev.type == "cuda" and dev.index is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if dev.type == "cuda" and dev.index is not None:
        torch.cuda.set_device(dev)
    return dev


def _check_run(run_dir: Path, cfg: GeneratorConfig, cohort: Path, fingerprint: str, seed: int) -> None:
    meta_path = run_dir / "run.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        new = json.loads(json.dumps(cfg.to_dict()))
        training_only = ("schedules", "precision", "time_budget")  # may change between runs; the networks may not
        # through GeneratorConfig, so options added since the run started compare at their defaults
        # (and the diffusion's sampling defaults and the decoding options, which only generation reads)
        old_norm = normalised_config(meta["config"])
        old_arch = {k: v for k, v in without_sampling(old_norm).items() if k not in training_only}
        if old_arch != {k: v for k, v in without_sampling(new).items() if k not in training_only}:
            raise ValueError(f"{run_dir} was started with a different architecture (preset "
                             f"{meta['config']['name']}); use a new --run directory")
        if meta["cohort_fingerprint"] != fingerprint or meta["seed"] != seed:
            raise ValueError(f"{run_dir} was started on another cohort or seed "
                             f"({meta['cohort']}, seed {meta['seed']}); use a new --run directory")
        if old_norm != new:
            # the architecture matched, so the schedules, precision or sampling defaults changed (stop
            # earlier, train longer, sample with DPM-Solver++): keep the history; the export takes the new ones
            meta.setdefault("schedule_history", []).append(
                {"changed_utc": utc_now(),
                 **{k: meta["config"].get(k) for k in training_only},
                 "diffusion_sampling": {k: old_norm["diffusion"].get(k) for k in SAMPLING_KEYS},
                 **{k: old_norm.get(k) for k in DECODING_KEYS}})
            meta["config"] = new
            meta_path.write_text(json.dumps(meta, indent=2))
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    meta_path.write_text(json.dumps({"config": cfg.to_dict(), "cohort": str(cohort.resolve()),
                                     "cohort_fingerprint": fingerprint, "seed": seed,
                                     **provenance(seeds={"run": seed})}, indent=2))


def train(cohort: str | Path, run_dir: str | Path, *, preset: str | Path | GeneratorConfig | None = None,
          seed: int = 0, device: torch.device | str = "cpu", stages: Sequence[str] | None = None,
          max_minutes: float | None = None, limit: int | None = None, progress: Progress | None = None,
          from_run: str | Path | None = None, warm_start: Sequence[str] = (), budget_minutes: float | None = None,
          steps: int | None = None, batch_size: int | None = None, lr: float | None = None,
          val_patients: int | None = None) -> TrainReport:
    """Train (or continue training) every stage not yet finished; export when all are done.

    ``preset``: a name, YAML path or config (default: ``cpu``; from a generator directory, its own config).
    ``stages`` limits the run to those stages. ``max_minutes`` bounds this call's wall time: the running stage
    saves and returns. ``limit`` uses only the first ``limit`` patients of the cohort.
    ``from_run`` starts a new run from the unchanged finished stages of an earlier one
    (:func:`vctcore.train.branch.branch_run`), or of a generator directory such as ``checkpoints/default``
    (:mod:`vctcore.train.from_generator`); ``warm_start`` names stages (so far: diffusion) that, when
    retrained, start from ``from_run``'s weights wherever they fit (:func:`vctcore.train.warm_start.warm_start`).
    From a generator directory, ``stages`` names the stages to train on instead (:mod:`vctcore.train.train_on`:
    ``steps``, ``batch_size`` and peak ``lr`` of their schedule, the first ``val_patients`` held out; default 8);
    the run then exports the generator with those networks replaced.
    ``budget_minutes`` replaces the preset's time budget (0: none; :mod:`vctcore.train.budget`).
    """
    from vctcore.devices import describe_device, resolve_device

    cohort, run_dir = Path(cohort), Path(run_dir)
    generator_dir = Path(from_run) if from_run is not None and is_generator_dir(from_run) else None
    on = _train_on(generator_dir, stages, steps=steps, batch_size=batch_size, lr=lr, val_patients=val_patients)
    cfg = _config(preset, generator_dir, budget_minutes, on)
    warm_start = tuple(warm_start)
    _check_options(cfg, cohort, limit, from_run, warm_start, on)
    dev = resolve_device(device) if isinstance(device, str) else device
    deadline = time.monotonic() + 60 * max_minutes if max_minutes else None
    torch.manual_seed(seed)
    dev = _rank_device(dev)
    rank, world, wrap = _distributed(dev)
    if cfg.time_budget is not None and world > 1:
        raise ValueError(f"preset {cfg.name!r} has a time budget, which single-process runs use (each rank would "
                         "decide on its own timings); pass --budget-minutes 0 under torchrun")
    if generator_dir is not None:
        from_run = run_dir / GENERATOR_FOLDER  # the generator's networks as stage files (written below)

    def prepare() -> CohortArrays:
        if generator_dir is not None and rank == 0:
            generator_as_run(generator_dir, from_run)
        if from_run is not None and rank == 0:
            link_cache(from_run, run_dir)
        data = load_cohort(cohort, cfg.grid_shape, run_dir / "cache", limit=limit,
                           progress=(lambda d, n: progress("load", d, n, {})) if progress else None,
                           spacing_mm=cfg.spacing_mm if on is not None else None)
        if on is not None and rank == 0:
            from vctcore.generator import read_checkpoint_json

            check_record(run_dir, on, read_checkpoint_json(generator_dir / "manifest.json")["files"])
        if from_run is not None and rank == 0:
            branch_run(from_run, run_dir, cfg, data.fingerprint, seed, warm_start,
                       leave=on.stages if on is not None else ())
        _check_run(run_dir, cfg, cohort, data.fingerprint, seed)
        return data

    # under DDP rank 0 writes the cohort cache, the branch and run.json; the others then read them
    # (two ranks building the same cache raced on its final rename)
    if rank == 0:
        data = prepare()
    _sync(world)
    if rank != 0:
        data = prepare()
    ctx = StageContext(cfg=cfg, data=data, run_dir=run_dir, device=dev, seed=seed, deadline=deadline,
                       progress=progress, rank=rank, world=world, wrap=wrap,
                       warm_from=Path(from_run) if warm_start or on else None, warm_stages=warm_start,
                       budget=RunBudget(run_dir, cfg.time_budget, cfg.schedules, progress) if cfg.time_budget else None,
                       train_on=on.stages if on else (), val_patients=on.val_patients if on else 0)
    needed = [s for s in STAGES if not (on is not None and s == "latents" and "diffusion" not in on.stages)]
    results, done = _run_stages(ctx, list(stages) if stages and on is None else needed, needed, world)
    report = TrainReport(results, None, ctx.budget.summary() if ctx.budget is not None else [],
                         read_held_out(run_dir) if on is not None else {})
    if not done or rank != 0:
        return report
    from vctcore.train.export import export_generator

    report.generator_dir = (export_trained_on(run_dir, generator_dir, data, describe_device(dev)) if on is not None
                            else export_generator(run_dir, run_dir / "generator", data))
    return report


def _train_on(generator_dir: Path | None, stages: Sequence[str] | None, **schedule: float | None) -> TrainOn | None:
    """What a run trains on from a generator (``stages`` given and ``from_run`` a generator directory), or None;
    ValueError for schedule options (steps, batch size, lr, held-out patients) without that."""
    given = {k: v for k, v in schedule.items() if v is not None}
    if generator_dir is None or not stages:
        if given:
            raise ValueError(f"{', '.join('--' + k.replace('_', '-') for k in given)}: these train a generator's "
                             "stages on; they need --from-run GENERATOR_DIR and --stages")
        return None
    return TrainOn(tuple(stages), **given)


def _config(preset: str | Path | GeneratorConfig | None, generator_dir: Path | None, budget_minutes: float | None,
            on: TrainOn | None) -> GeneratorConfig:
    """The run's config: ``preset`` (default: the generator's own config from a generator directory, else
    ``cpu``), its time budget replaced by ``budget_minutes``, and the schedules of the stages trained on."""
    if preset is None:
        preset = generator_dir / "config.json" if generator_dir is not None else "cpu"
    cfg = preset if isinstance(preset, GeneratorConfig) else load_preset(preset)
    if budget_minutes is not None:
        if on is not None:
            raise ValueError("--budget-minutes: a generator's stages train on without a time budget; "
                             "use --max-minutes to stop resumably")
        cfg = with_budget(cfg, budget_minutes)
    return plan(cfg, on) if on is not None else cfg


def _check_options(cfg: GeneratorConfig, cohort: Path, limit: int | None, from_run: str | Path | None,
                   warm_start: tuple[str, ...], on: TrainOn | None) -> None:
    """ValueError for options that do not go together, before anything is written."""
    if warm_start and from_run is None:
        raise ValueError("--warm-start needs --from-run (the run whose weights the stages start from)")
    if [s for s in warm_start if s not in WARM_STAGES]:
        raise ValueError(f"--warm-start: stages that can warm-start: {', '.join(WARM_STAGES)}; got {', '.join(warm_start)}")
    if on is None:
        return
    if warm_start:
        raise ValueError("--warm-start retrains stages whose config changed; --stages from a generator trains its "
                         "unchanged ones on: use one or the other")
    from vctcore.cohort import read_attributes

    table = read_attributes(cohort)
    on.check(len(table) if limit is None else min(limit, len(table)))
    check_cohort(table, cfg, cohort)


def _run_stages(ctx: StageContext, wanted: list[str], needed: list[str], world: int) -> tuple[list[StageResult], bool]:
    """Run the ``wanted`` stages not yet done, in order, until one pauses; returns their results and whether
    every ``needed`` stage is now done (the run can be exported)."""
    results: list[StageResult] = []
    unknown = [s for s in wanted if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)}; stages: {', '.join(STAGES)}")
    # decided once: a stage's run changes only its own files, so the later stages' state stays as read here
    todo = [s for s in STAGES if s in wanted and not _done(ctx, s)]
    for i, stage in enumerate(todo):
        ctx.pending = {s: _left(ctx, s) for s in todo[i + 1:]}
        res = RUNNERS[stage](ctx)
        _sync(world)  # rank 0 writes the stage's model; the next stage reads it on every rank
        results.append(res)
        if not res.finished:
            return results, False
    return results, all(_done(ctx, s) for s in needed)


def _left(ctx: StageContext, stage: str) -> float:
    """Fraction of a stage's full schedule still to run (the latents: patients still to encode / the
    preset's count, which its reference time was measured on). Stages not started count as 1."""
    if stage == "latents":
        from vctcore.train.latents import latents_done

        sch = ctx.cfg.schedules.get("latents")
        full = sch.steps if sch is not None else len(ctx.data)
        return max(0, ctx.latent_count() - latents_done(ctx.run_dir)) / max(1, full)
    return 1.0


def _done(ctx: StageContext, stage: str) -> bool:
    """A stage is done when its model exists and its saved step reaches the (possibly longer) schedule."""
    if stage in OPTIONAL_STAGES and stage not in ctx.cfg.schedules:
        return True
    if stage == "latents":
        done = ctx.run_dir / "latents" / "done.json"
        return done.exists() and json.loads(done.read_text())["done"] >= ctx.latent_count()
    if not ctx.model_path(stage).exists():
        return False
    state = ctx.run_dir / "state" / f"{stage}.pt"
    if not state.exists():
        return True
    from vctcore.models.checkpoint import load_state

    return int(load_state(state)["step"]) >= ctx.schedule(stage).steps
