"""Fit a preset's training schedule into a wall-time budget on the machine that runs it.

A preset's step counts are timed on one machine; another of the same core count may run them at half
the speed (measured: docs/timings.md). With a
``time_budget`` in the preset, every stage a run starts times its first ``probe_steps`` steps (after
one warm-up step) and, when the run would not fit in ``minutes``, shortens that stage so that it and
the stages after it fit in what is left:

    left   = minutes - time spent so far (every stage's logged seconds, the latents' encoding time)
    slow   = the mean slow-down (measured / reference time) of the stages that have run, from their
             whole logged time, and of this stage, from its probe
    fixed  = the later stages that cannot be shortened (``latents``: one pass over the cohort),
             predicted as reference minutes x slow
    scale  = min(1, (left - fixed) / (this stage's remaining steps x its measured s/step
                                      + the later shortenable stages' reference minutes x slow))

so every shortenable stage gives up the same fraction. Later stages decide for themselves when they
start, on the time actually left, so a wrong prediction is corrected by the stages after it. A stage
keeps at least ``min_fraction`` of its steps. The learning-rate warm-up (100 steps) is longer than the
probe, so a stage's learning-rate schedule follows the shortened length from its first step on.

A stage also solves its plan again at every checkpoint, on its rate over the last checkpoint interval
(the save included), and takes the new length when it differs from the current one by at least
``REVISE_FRACTION`` of the configured steps: shorter when the run would now overrun, longer (up to the
configured steps) when an earlier slow stretch has passed. A 10-step probe can
miss the steady rate, and the machine can slow down mid-stage (another job on the cores); the longest
stage (the diffusion: 70 % of the ``cpu`` preset) is then the only one with enough steps left to
absorb it. A rate averaged since the probe would keep a passing slow stretch in every later check
(examples: docs/timings.md), so the rate is the latest
interval's and a decision can also grow back. Moving the end of a cosine learning-rate schedule
mid-stage steps the learning rate (3 % when 2956 steps become 2700 at step 700).

Decisions are kept in ``<run>/budget.json`` (resumed runs keep them; the exported manifest copies the
file). Single-process runs only: ranks of a multi-GPU run would each decide on their own timings.
"""
from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from vctcore.models.config import GeneratorConfig, StageSchedule, TimeBudget
from vctcore.provenance import utc_now

#: stages whose length is not a schedule the budget may shorten (``latents`` encodes every patient once)
FIXED_STAGES = ("latents",)
#: a check at a checkpoint changes the stage's length only by at least this fraction of its configured steps
REVISE_FRACTION = 0.01
#: ... and only on a rate timed over at least this many steps (a resumed stage's 10-step probe is too noisy)
REVISE_MIN_STEPS = 50


def budget_path(run_dir: Path) -> Path:
    """Where a run keeps its time-budget decisions."""
    return Path(run_dir) / "budget.json"


def read_budget(run_dir: Path) -> dict[str, Any] | None:
    """A run's ``budget.json`` ({"minutes", "stages": {stage: decision}}), or None when it has none."""
    path = budget_path(run_dir)
    return json.loads(path.read_text()) if path.exists() else None


def with_budget(cfg: GeneratorConfig, minutes: float) -> GeneratorConfig:
    """``cfg`` with its time budget set to ``minutes`` (0: no budget, the full schedule whatever it takes)."""
    if minutes == 0:
        return replace(cfg, time_budget=None)
    if not minutes > 0:
        raise ValueError(f"--budget-minutes must be positive (or 0 for no budget), got {minutes}")
    if cfg.time_budget is None or not cfg.time_budget.reference_minutes:
        raise ValueError(f"preset {cfg.name!r} has no time_budget.reference_minutes (each stage's minutes on the "
                         "machine it was timed on), which a time budget needs to predict the later stages")
    return replace(cfg, time_budget=replace(cfg.time_budget, minutes=float(minutes)))


def plan_stage(budget: TimeBudget, stage: str, configured_steps: int, done_steps: int, s_per_step: float,
               spent_s: float, later: Mapping[str, float], slowdowns: Sequence[float]) -> dict[str, Any]:
    """How many steps ``stage`` may run in all (returned as ``steps``, with the figures behind it).

    ``done_steps`` have run (``spent_s`` includes them); ``s_per_step`` is this stage's measured rate;
    ``later`` maps the stages still to run after it to the fraction of their reference minutes still
    to do (the latents of a 100-patient cohort: 100/400); ``slowdowns`` the measured / reference
    ratios of the stages that ran before it (this stage's own ratio, from its probe, is added when it
    has reference minutes).
    """
    ref = budget.reference_minutes
    slow = list(slowdowns)
    own = None
    if ref.get(stage):
        own = s_per_step / (60.0 * ref[stage] / configured_steps)
        slow.append(own)
    factor = sum(slow) / len(slow) if slow else 1.0
    left_s = 60.0 * budget.minutes - spent_s
    fixed_s = sum(60.0 * ref.get(s, 0.0) * f * factor for s, f in later.items() if s in FIXED_STAGES)
    scalable_s = (configured_steps - done_steps) * s_per_step + sum(
        60.0 * ref.get(s, 0.0) * f * factor for s, f in later.items() if s not in FIXED_STAGES)
    scale = 1.0 if scalable_s <= 0 else max(0.0, min(1.0, (left_s - fixed_s) / scalable_s))
    steps = done_steps + math.floor((configured_steps - done_steps) * scale)
    floor_steps = max(done_steps + 1, math.ceil(budget.min_fraction * configured_steps))
    steps = min(configured_steps, max(steps, floor_steps))
    return {"configured_steps": configured_steps, "steps": steps, "scale": round(scale, 4),
            "decided_at_step": done_steps, "s_per_step": round(s_per_step, 4),
            "slowdown": round(own, 3) if own is not None else None, "predicted_slowdown": round(factor, 3),
            "spent_minutes": round(spent_s / 60.0, 2), "left_minutes": round(left_s / 60.0, 2),
            "later_fixed_minutes": round(fixed_s / 60.0, 2), "at_floor": steps == floor_steps < configured_steps,
            "decided_utc": utc_now()}


def logged_progress(run_dir: Path, stage: str) -> tuple[int, float]:
    """(steps, seconds) a stage has run so far, from its log's last row (the latents: patients encoded
    and seconds, from ``done.json``); (0, 0.0) before it starts."""
    if stage == "latents":
        done = run_dir / "latents" / "done.json"
        if not done.exists():
            return 0, 0.0
        d = json.loads(done.read_text())
        return int(d["done"]), float(d.get("seconds", 0.0))
    log = run_dir / "logs" / f"{stage}.csv"
    if not log.exists():
        return 0, 0.0
    last = None
    with open(log, newline="") as fh:
        for last in csv.DictReader(fh):
            pass
    return (int(last["step"]), float(last["seconds"])) if last else (0, 0.0)


class RunBudget:
    """A run's budget decisions (``<run>/budget.json``) and the planner each stage's loop calls."""

    def __init__(self, run_dir: Path, budget: TimeBudget, schedules: Mapping[str, StageSchedule],
                 progress: Callable[[str, int, int, dict], None] | None = None) -> None:
        self.run_dir, self.budget, self.schedules, self.progress = Path(run_dir), budget, dict(schedules), progress
        self.path = budget_path(self.run_dir)
        self.state: dict[str, Any] = read_budget(self.run_dir) or {"stages": {}}

    def schedule(self, stage: str, sch: StageSchedule) -> StageSchedule:
        """``sch`` with the decided step count and the adversarial start scaled with it: with the shortest
        length ever decided, so that a stage grown back by a later check never switches an adversarial
        phase off again (nor on a resume)."""
        d = self.state["stages"].get(stage)
        if d is None or d["configured_steps"] != sch.steps:
            return sch  # undecided, or the preset's schedule changed since: the new one stands
        frac = min(r["steps"] for r in (d, *d.get("revisions", []))) / max(1, sch.steps)
        return replace(sch, steps=d["steps"], adversarial_start=int(round(sch.adversarial_start * frac)))

    def planner(self, stage: str, sch: StageSchedule, later: Mapping[str, float]
                ) -> Callable[[int, float, float, int], StageSchedule]:
        """A callback for ``run_loop``: given (steps done, measured s/step, the stage's seconds so far, the
        steps timed) it decides the stage's length (first call of an undecided stage) or solves it again
        and changes it when the answer differs by :data:`REVISE_FRACTION` or more (on a rate of at least
        :data:`REVISE_MIN_STEPS` steps); records it and returns the stage's schedule."""

        def plan(done: int, s_per_step: float, stage_seconds: float, timed: int) -> StageSchedule:
            old = self.state["stages"].get(stage)
            if old is not None and old["configured_steps"] != sch.steps:
                old = None  # the preset's schedule changed since: decide afresh
            if old is not None and timed < REVISE_MIN_STEPS:
                return self.schedule(stage, sch)
            others = {s: logged_progress(self.run_dir, s) for s in (*self.schedules, "latents") if s != stage}
            spent = stage_seconds + sum(sec for _, sec in others.values())
            slow = [v for v in (self._slowdown(s, *p) for s, p in others.items()) if v is not None]
            # a check solves the same problem afresh: this stage and the later ones give up the same
            # fraction of what they have left, on the time actually left and the latest rate
            new = plan_stage(self.budget, stage, sch.steps, done, s_per_step, spent, later, slow)
            if old is not None:
                if abs(new["steps"] - old["steps"]) < max(1, math.ceil(REVISE_FRACTION * sch.steps)):
                    return self.schedule(stage, sch)  # too small a change to move the schedule for
                keep = ("decided_at_step", "steps", "s_per_step", "left_minutes", "decided_utc")
                new["revisions"] = [*old.get("revisions", []), {k: old[k] for k in keep if k in old}]
            self.state["minutes"] = self.budget.minutes
            self.state["stages"][stage] = new
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.state, indent=2))
            tmp.replace(self.path)
            if self.progress is not None:
                self.progress(stage, done, new["steps"], {"budget_scale": new["scale"], "s_per_step": new["s_per_step"]})
            return self.schedule(stage, sch)

        return plan

    def _slowdown(self, stage: str, steps: int, seconds: float) -> float | None:
        """Measured / reference time of a stage that has run (its whole logged time, adversarial phases and
        checkpoints included, which a stage's probe of its first steps does not see); None before it ran
        ``probe_steps`` steps or without reference minutes."""
        ref = self.budget.reference_minutes.get(stage)
        full = self.schedules[stage].steps if stage in self.schedules else None
        if not ref or not full or steps < self.budget.probe_steps or seconds <= 0:
            return None
        return (seconds / steps) / (60.0 * ref / full)

    def summary(self) -> list[str]:
        """One line per decided stage, for the end of a ``vct train`` call."""
        out = []
        for stage, d in self.state["stages"].items():
            slow = f", {d['slowdown']:.2f}x the reference" if d.get("slowdown") else ""
            floor = (f"; at its floor of {self.budget.min_fraction:.0%} of the steps: this machine cannot train the "
                     "preset in the budget" if d.get("at_floor") else "")
            revs = d.get("revisions") or []
            revised = (f"; revised at step {d['decided_at_step']} from the {revs[0]['steps']} steps decided at step "
                       f"{revs[0]['decided_at_step']}" + (f", {len(revs)} revisions" if len(revs) > 1 else "")
                       if revs else "")
            out.append(f"time budget: {stage} {d['steps']}/{d['configured_steps']} steps "
                       f"({d['s_per_step']:.3g} s/step measured{slow}; {d['left_minutes']:.0f} of "
                       f"{self.state.get('minutes', self.budget.minutes):g} min were left{revised}{floor})")
        return out
