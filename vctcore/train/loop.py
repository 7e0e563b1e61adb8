"""The resumable step loop shared by every training stage.

State (model, optimiser, step, RNG states) is saved every ``checkpoint_every`` steps, when a time
budget runs out and on Ctrl-C / SIGTERM; a rerun continues from the saved step. Losses go to
``<run>/logs/<stage>.csv`` (step, seconds, each loss term), which pandas, spreadsheets and
TensorBoard's CSV import read.
"""
from __future__ import annotations

import csv
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vctcore.models.checkpoint import load_state, save_state
from vctcore.models.config import StageSchedule

Progress = Callable[[str, int, int, dict], None]


@dataclass
class StageResult:
    """What a stage run did: ``finished`` is False when it stopped early (time budget, signal)."""

    stage: str
    step: int
    total: int
    finished: bool
    seconds: float
    last_losses: dict


class _Stop:
    """Turns SIGTERM into a polite stop at the next step."""

    def __init__(self) -> None:
        self.requested = False
        self._old = None

    def __enter__(self) -> "_Stop":
        try:
            self._old = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def _handle(self, *_: object) -> None:
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def warmup_cosine_lr(sch: StageSchedule, step: int, warmup: int = 100) -> float:
    """Linear warm-up then cosine decay to 10 % of the base rate."""
    if step < warmup:
        return sch.lr * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, sch.steps - warmup))
    return float(sch.lr * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * frac))))  # a Python float: states load weights_only


def _restore(state_path: Path, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
             gens: dict[str, torch.Generator], set_rng_state: Callable[[dict], None] | None) -> tuple[int, float]:
    """Load a stage's saved state (modules, optimisers, torch and generator RNG positions, the caller's
    ``rng``) into place; returns (steps done, seconds trained), (0, 0.0) when there is no state yet."""
    if not state_path.exists():
        return 0, 0.0
    st = load_state(state_path)
    for name, mod in modules.items():
        mod.load_state_dict(st["modules"][name])
    for name, opt in optimizers.items():
        opt.load_state_dict(st["optimizers"][name])
    torch.set_rng_state(st["torch_rng"])
    for name, gen in gens.items():
        gen.set_state(st["generators"][name])
    if set_rng_state is not None and "rng" in st:
        set_rng_state(st["rng"])
    return int(st["step"]), float(st.get("seconds", 0.0))


class _LossLog:
    """A stage's CSV loss log (``step, seconds, <loss terms>``), appended to across resumes; the header is
    written once, from the first step's loss terms, and a step with other terms is a RuntimeError."""

    def __init__(self, stage: str, path: Path) -> None:
        self.stage, self.path = stage, path
        self.fh = open(path, "a", newline="")
        self.writer: csv.DictWriter | None = None

    def write(self, step: int, seconds: float, losses: dict[str, float]) -> None:
        if self.writer is None:
            self.writer = csv.DictWriter(self.fh, fieldnames=["step", "seconds", *losses])
            if self.path.stat().st_size == 0:
                self.writer.writeheader()
        terms = list(self.writer.fieldnames[2:])
        if set(losses) != set(terms):
            raise RuntimeError(f"stage {self.stage}: loss terms changed mid-run ({sorted(losses)} vs {terms})")
        self.writer.writerow({"step": step, "seconds": round(seconds, 2), **{k: round(v, 6) for k, v in losses.items()}})

    def flush(self) -> None:
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def run_loop(stage: str, run_dir: Path, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
             schedule: StageSchedule, step_fn: Callable[[int], dict[str, float]], *,
             rng_state: Callable[[], dict] | None = None, set_rng_state: Callable[[dict], None] | None = None,
             generators: dict[str, torch.Generator | None] | None = None,
             deadline: float | None = None, progress: Progress | None = None, is_main: bool = True,
             plan: Callable[[int, float, float, int], StageSchedule] | None = None, probe_steps: int = 10) -> StageResult:
    """Run ``step_fn(step)`` from the saved step to ``schedule.steps``; returns where it stopped.

    The saved state holds ``rng_state()`` and the position of each torch ``generators`` entry (None entries
    are skipped), so a resumed stage draws what an uninterrupted one would have drawn.
    ``deadline`` is a ``time.monotonic()`` value after which the loop saves and returns. ``plan``
    (a time budget, :mod:`vctcore.train.budget`) is called after one warm-up step and ``probe_steps``
    timed ones, and again at every checkpoint after that, with (steps done, seconds per step over the
    probe or, later, over the last ``checkpoint_every`` steps, the stage's seconds so far, the steps that
    rate was timed on); it returns the stage's schedule from then on. With ``schedule.lr_schedule``
    "cosine" every optimiser's learning rate is set by :func:`warmup_cosine_lr` before each step (over
    the schedule in force, so a shortened stage also shortens its cosine).
    """
    state_path = run_dir / "state" / f"{stage}.pt"
    gens = {k: g for k, g in (generators or {}).items() if g is not None}
    log_path = run_dir / "logs" / f"{stage}.csv"
    step, elapsed = _restore(state_path, modules, optimizers, gens, set_rng_state)

    def save() -> None:
        if not is_main:
            return
        save_state({"modules": {k: m.state_dict() for k, m in modules.items()},
                    "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                    "step": step, "seconds": elapsed, "torch_rng": torch.get_rng_state(),
                    "generators": {k: g.get_state() for k, g in gens.items()},
                    "rng": rng_state() if rng_state is not None else {}}, state_path)

    log_path.parent.mkdir(parents=True, exist_ok=True)
    losses: dict[str, float] = {}
    start = time.monotonic()
    base = elapsed
    log = _LossLog(stage, log_path) if is_main else None
    try:
        with _Stop() as stop:
            for m in modules.values():
                m.train()
            ran = 0
            # end times of the latest steps (the first is the warm-up step's): the planner's rate is over
            # the probe, later over the last checkpoint interval, so a stretch of slow steps ages out
            ends: deque[float] = deque(maxlen=max(probe_steps, schedule.checkpoint_every) + 1)
            while step < schedule.steps:
                if schedule.lr_schedule == "cosine":
                    for opt in optimizers.values():
                        for group in opt.param_groups:
                            group["lr"] = warmup_cosine_lr(schedule, step)
                losses = step_fn(step)
                step += 1
                ran += 1
                now = time.monotonic()
                elapsed = base + now - start
                ends.append(now)
                if plan is not None and step < schedule.steps and (
                        ran == probe_steps + 1 or (ran > probe_steps + 1 and step % schedule.checkpoint_every == 0)):
                    timed = len(ends) - 1
                    schedule = plan(step, (ends[-1] - ends[0]) / timed, elapsed, timed)
                if log is not None:
                    log.write(step, elapsed, losses)
                if progress is not None:
                    progress(stage, step, schedule.steps, losses)
                if step % schedule.checkpoint_every == 0:
                    save()
                    if log is not None:
                        log.flush()
                if stop.requested or (deadline is not None and time.monotonic() > deadline):
                    break
    except KeyboardInterrupt:
        save()
        raise
    finally:
        if log is not None:
            log.close()
    save()
    return StageResult(stage, step, schedule.steps, step >= schedule.steps, elapsed, losses)
