"""The training time budget: the planner's arithmetic, the loop's probe, and a real (tiny) run that a
budget shortens, resumes and exports."""
from __future__ import annotations

import copy
import json
import math

import pytest
import yaml
from generator_fixtures import TINY_PRESET

from vctcore.models.config import GeneratorConfig, StageSchedule, TimeBudget, load_preset
from vctcore.train.budget import plan_stage, with_budget
from vctcore.train.loop import run_loop

# generator training and research diagnostics (paused work): run with -m slow
pytestmark = pytest.mark.slow

REF = {"a": 10.0, "b": 30.0, "latents": 5.0, "c": 15.0}
LATER = {"b": 1.0, "latents": 1.0, "c": 1.0}


def _rate(stage: str, steps: int, slowdown: float) -> float:
    return slowdown * 60.0 * REF[stage] / steps


def test_a_machine_twice_as_slow_shortens_every_shortenable_stage_by_the_same_fraction():
    budget = TimeBudget(minutes=60.0, reference_minutes=REF)
    d = plan_stage(budget, "a", 1000, 0, _rate("a", 1000, 2.0), 0.0, LATER, [])
    # full schedule at 2x: a 20 + b 60 + c 30 shortenable, latents 10 fixed: 110 + 10 = 120 min in 60
    assert d["slowdown"] == pytest.approx(2.0)
    assert d["later_fixed_minutes"] == pytest.approx(10.0)
    assert d["scale"] == pytest.approx(50 / 110, abs=1e-4)
    assert d["steps"] == math.floor(1000 * 50 / 110)
    # what the plan predicts for the whole run fills the budget, not more
    predicted = d["steps"] * _rate("a", 1000, 2.0) / 60 + d["scale"] * (60 + 30) + 10
    assert predicted == pytest.approx(60.0, abs=0.1)


def test_a_fast_machine_keeps_the_full_schedule():
    budget = TimeBudget(minutes=60.0, reference_minutes=REF)
    d = plan_stage(budget, "a", 1000, 0, _rate("a", 1000, 0.5), 0.0, LATER, [])
    assert d["steps"] == 1000 and d["scale"] == 1.0 and not d["at_floor"]


def test_later_stages_use_the_slowdowns_measured_so_far_and_only_the_time_left():
    budget = TimeBudget(minutes=60.0, reference_minutes=REF)
    # a took 20 min (2x); b starts 10 steps in, itself 3x slow: mean slowdown 2.5 predicts c at 37.5 min
    spent = 20 * 60 + 10 * _rate("b", 600, 3.0)
    d = plan_stage(budget, "b", 600, 10, _rate("b", 600, 3.0), spent, {"c": 1.0}, [2.0])
    assert d["predicted_slowdown"] == pytest.approx(2.5)
    left = 60 * 60 - spent
    scale = left / (590 * _rate("b", 600, 3.0) + 60 * 15 * 2.5)
    assert d["steps"] == 10 + math.floor(590 * scale)


def test_the_latents_count_only_for_the_patients_still_to_encode():
    budget = TimeBudget(minutes=60.0, reference_minutes=REF)
    full = plan_stage(budget, "a", 1000, 0, _rate("a", 1000, 2.0), 0.0, LATER, [])
    quarter = plan_stage(budget, "a", 1000, 0, _rate("a", 1000, 2.0), 0.0, {**LATER, "latents": 0.25}, [])
    assert quarter["later_fixed_minutes"] == pytest.approx(2.5)
    assert quarter["steps"] > full["steps"]


def test_an_impossible_budget_keeps_a_floor_of_steps():
    budget = TimeBudget(minutes=1.0, reference_minutes=REF, min_fraction=0.2)
    d = plan_stage(budget, "a", 1000, 11, _rate("a", 1000, 2.0), 600.0, LATER, [])
    assert d["scale"] == 0.0 and d["steps"] == 200 and d["at_floor"]
    # a stage already past its floor stops at the next step
    d = plan_stage(budget, "a", 1000, 300, _rate("a", 1000, 2.0), 600.0, LATER, [])
    assert d["steps"] == 301


def test_budget_settings_are_checked():
    for bad in ({"minutes": 0}, {"minutes": 10, "probe_steps": 0}, {"minutes": 10, "min_fraction": 0},
                {"minutes": 10, "reference_minutes": {"a": -1}}):
        with pytest.raises(ValueError, match="time_budget"):
            TimeBudget(**bad)
    with pytest.raises(ValueError, match="unknown field"):
        GeneratorConfig.from_dict({**TINY_PRESET, "time_budget": {"minutes": 5, "hours": 1}})
    cpu = load_preset("cpu")
    assert cpu.time_budget is not None and cpu.time_budget.minutes == 172
    assert set(cpu.time_budget.reference_minutes) == set(cpu.schedules)
    assert GeneratorConfig.from_dict(json.loads(json.dumps(cpu.to_dict()))) == cpu
    assert with_budget(cpu, 0).time_budget is None
    assert with_budget(cpu, 90).time_budget.minutes == 90
    with pytest.raises(ValueError, match="reference_minutes"):
        with_budget(GeneratorConfig.from_dict(TINY_PRESET), 30)
    with pytest.raises(ValueError, match="positive"):
        with_budget(cpu, -5)


def test_the_loop_probes_once_and_follows_the_planned_schedule(tmp_path):
    import torch

    lin = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    calls = []

    def plan(done: int, s_per_step: float, seconds: float, timed: int) -> StageSchedule:
        calls.append((done, s_per_step, seconds, timed))
        return StageSchedule(steps=7, checkpoint_every=100)

    def step(i: int) -> dict[str, float]:
        return {"loss": float(i)}

    res = run_loop("s", tmp_path, {"m": lin}, {"m": opt}, StageSchedule(steps=50, checkpoint_every=100), step,
                   plan=plan, probe_steps=3)
    assert [c[0] for c in calls] == [4]  # one warm-up step, three timed
    assert calls[0][1] >= 0 and calls[0][2] >= calls[0][1] * 3 and calls[0][3] == 3
    assert res.step == 7 and res.total == 7 and res.finished


def test_the_loop_checks_the_plan_again_at_every_checkpoint(tmp_path):
    import torch

    lin = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    calls = []

    def plan(done: int, s_per_step: float, seconds: float, timed: int) -> StageSchedule:
        calls.append((done, timed))
        return StageSchedule(steps=40 if done < 20 else 23, checkpoint_every=5)  # shortened at the step-20 check

    res = run_loop("s", tmp_path, {"m": lin}, {"m": opt}, StageSchedule(steps=50, checkpoint_every=5),
                   lambda i: {"loss": float(i)}, plan=plan, probe_steps=3)
    # the probe after step 4, then every checkpoint (5, 10, ...) with the rate of the last interval
    assert calls == [(4, 3), (5, 4), (10, 5), (15, 5), (20, 5)]
    assert res.step == 23 and res.total == 23 and res.finished


def test_a_cosine_schedule_sets_every_steps_learning_rate_and_follows_a_shortened_plan(tmp_path):
    import torch

    from vctcore.train.loop import warmup_cosine_lr

    lin = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    seen = []

    def step(i: int) -> dict[str, float]:
        seen.append(opt.param_groups[0]["lr"])
        return {"loss": float(i)}

    run_loop("s", tmp_path / "const", {"m": lin}, {"m": opt}, StageSchedule(steps=5, lr=0.1), step)
    assert seen == [0.1] * 5
    seen.clear()
    cosine = StageSchedule(steps=300, lr=0.1, checkpoint_every=50, lr_schedule="cosine")
    shortened = StageSchedule(steps=200, lr=0.1, checkpoint_every=50, lr_schedule="cosine")
    res = run_loop("s", tmp_path / "cos", {"m": lin}, {"m": opt}, cosine, step,
                   plan=lambda done, *_: cosine if done < 100 else shortened, probe_steps=3)
    assert res.step == 200 and res.finished
    assert seen[0] == pytest.approx(0.001) and seen[99] == pytest.approx(0.1)  # 100 warm-up steps
    assert seen[:100] == sorted(seen[:100]) and seen[100:] == sorted(seen[100:], reverse=True)
    # the decay follows the plan in force: it reaches 10 % of the rate at the shortened stage's end
    assert seen[150] == pytest.approx(warmup_cosine_lr(shortened, 150)) and seen[-1] == pytest.approx(0.01, rel=0.01)
    with pytest.raises(ValueError, match="lr_schedule must be one of constant, cosine, got 'step'"):
        StageSchedule(steps=5, lr_schedule="step")


def _budget_preset(path, minutes: float):
    preset = copy.deepcopy(TINY_PRESET)
    preset["time_budget"] = {"minutes": minutes, "probe_steps": 1, "min_fraction": 0.1,
                             "reference_minutes": {s: 0.01 for s in (*preset["schedules"], "latents")}}
    path.write_text(yaml.safe_dump(preset))
    return path


def test_a_run_over_its_budget_trains_shortened_stages_resumes_and_exports(tiny_generator, tmp_path):
    from vctcore.generator import Generator
    from vctcore.train.run import train

    preset = _budget_preset(tmp_path / "budget.yaml", minutes=1e-4)  # 6 ms: every stage at its floor
    run = tmp_path / "run"
    first = train(tiny_generator["cohort"], run, preset=preset, seed=3, stages=["image_ae_1"])
    decided = json.loads((run / "budget.json").read_text())["stages"]
    # one warm-up and one timed step, then the floor: the next step
    assert decided["image_ae_1"]["steps"] == 3 and decided["image_ae_1"]["configured_steps"] == 6
    assert decided["image_ae_1"]["at_floor"]
    assert first.results[0].finished and first.results[0].total == 3
    assert sum(1 for _ in open(run / "logs" / "image_ae_1.csv")) == 1 + 3
    line = next(line for line in first.budget_lines if line.startswith("time budget: image_ae_1 3/6 steps"))
    assert "at its floor of 10% of the steps: this machine cannot train the preset in the budget" in line

    rest = train(tiny_generator["cohort"], run, preset=preset, seed=3)
    assert "image_ae_1" not in [r.stage for r in rest.results]  # done at its shortened length
    decided = json.loads((run / "budget.json").read_text())["stages"]
    assert decided["diffusion"]["steps"] == 3 and decided["post"]["steps"] == 3
    # seg_decoder has 2 steps: too few to probe, so it runs in full
    assert "seg_decoder" not in decided
    assert rest.generator_dir is not None
    manifest = json.loads((rest.generator_dir / "manifest.json").read_text())
    assert manifest["training"]["time_budget"]["stages"]["diffusion"]["steps"] == 3
    assert manifest["training"]["stages"]["diffusion"]["steps"] == 3
    Generator.from_pretrained(rest.generator_dir, device="cpu")  # loads, sha256 checked
    from vctcore.train.model_card import write_model_card

    card = write_model_card(rest.generator_dir).read_text()
    assert "Time budget: 0.0001 training minutes" in card and "diffusion 3/6 steps" in card

    again = train(tiny_generator["cohort"], run, preset=preset, seed=3)
    assert again.results == [] and again.generator_dir is not None

    # a run branched from it brings the shortened stages as finished, with their decisions
    branch = train(tiny_generator["cohort"], tmp_path / "branch", preset=preset, seed=3, from_run=run)
    assert branch.results == [] and branch.generator_dir is not None
    brought = json.loads((tmp_path / "branch" / "budget.json").read_text())["stages"]
    assert brought["image_ae_1"]["steps"] == 3 and brought["diffusion"]["steps"] == 3


def test_a_generous_budget_changes_nothing(tiny_generator, tmp_path):
    from vctcore.train.run import train

    preset = _budget_preset(tmp_path / "budget.yaml", minutes=1e4)
    run = tmp_path / "run"
    rep = train(tiny_generator["cohort"], run, preset=preset, seed=3, stages=["image_ae_1", "image_ae_2"])
    decided = json.loads((run / "budget.json").read_text())["stages"]
    assert decided["image_ae_1"]["steps"] == 6 and decided["image_ae_1"]["scale"] == 1.0
    assert [r.total for r in rep.results] == [6, 4]
    # --budget-minutes 0: no budget at all (nothing decided for the stage it runs)
    rep = train(tiny_generator["cohort"], tmp_path / "none", preset=preset, seed=3, stages=["image_ae_1"],
                budget_minutes=0)
    assert rep.budget_lines == [] and not (tmp_path / "none" / "budget.json").exists()


def test_finished_stages_count_with_their_whole_logged_time(tmp_path):
    from vctcore.train.budget import RunBudget

    schedules = {"a": StageSchedule(steps=1000), "b": StageSchedule(steps=600), "c": StageSchedule(steps=300)}
    (tmp_path / "logs").mkdir()
    # stage a ran its 1000 steps in 30 min (the reference: 10), though its probe had seen 2x
    rows = ["step,seconds,loss", *(f"{i},{i * 1.8:.1f},0.1" for i in range(1, 1001))]
    (tmp_path / "logs" / "a.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "budget.json").write_text(json.dumps({"stages": {"a": {
        "configured_steps": 1000, "steps": 1000, "slowdown": 2.0, "s_per_step": 1.2, "left_minutes": 60}}}))
    budget = TimeBudget(minutes=120.0, reference_minutes=REF, probe_steps=5)
    rb = RunBudget(tmp_path, budget, schedules)
    assert rb.schedule("a", schedules["a"]).steps == 1000
    plan = rb.planner("b", schedules["b"], {"c": 1.0})
    sch = plan(6, _rate("b", 600, 2.0), 6 * _rate("b", 600, 2.0), 5)
    d = json.loads((tmp_path / "budget.json").read_text())["stages"]["b"]
    assert d["predicted_slowdown"] == pytest.approx((3.0 + 2.0) / 2, abs=1e-3)
    assert d["spent_minutes"] == pytest.approx(30 + 6 * _rate("b", 600, 2.0) / 60, abs=0.01)
    assert sch.steps == d["steps"] < 600
    assert any(line.startswith("time budget: b ") for line in rb.summary())


def test_a_stage_that_runs_slower_than_its_probe_shortens_itself_at_a_checkpoint(tmp_path):
    """The decision is solved again on the latest rate and changed by at least REVISE_FRACTION, on a rate
    of at least REVISE_MIN_STEPS steps: shortened while slow, grown back once fast, revisions recorded."""
    from vctcore.train.budget import REVISE_MIN_STEPS, RunBudget

    schedules = {"a": StageSchedule(steps=1000), "b": StageSchedule(steps=600), "c": StageSchedule(steps=300)}
    (tmp_path / "logs").mkdir()
    rows = ["step,seconds,loss", *(f"{i},{i * 1.2:.1f},0.1" for i in range(1, 1001))]  # a: 20 min, 2x
    (tmp_path / "logs" / "a.csv").write_text("\n".join(rows) + "\n")
    budget = TimeBudget(minutes=100.0, reference_minutes=REF, probe_steps=5)
    rb = RunBudget(tmp_path, budget, schedules)
    plan = rb.planner("b", schedules["b"], {"c": 1.0})
    rate = _rate("b", 600, 2.0)
    first = plan(6, rate, 6 * rate, 5).steps
    assert first < 600
    # at step 100 the stage runs at the probed rate: nothing changes, nor on a slower rate timed too briefly
    assert plan(100, rate, 100 * rate, 94).steps == first
    assert plan(100, 1.5 * rate, 100 * 1.5 * rate, REVISE_MIN_STEPS - 1).steps == first
    # 50 % slower since the probe: shortened so that it still fits, the first decision kept as a revision
    later = plan(200, 1.5 * rate, 200 * 1.5 * rate, 194)
    d = json.loads((tmp_path / "budget.json").read_text())["stages"]["b"]
    assert later.steps == d["steps"] < first and d["decided_at_step"] == 200
    assert [r["steps"] for r in d["revisions"]] == [first] and d["revisions"][0]["decided_at_step"] == 6
    left = 60 * 100 - 20 * 60 - 200 * 1.5 * rate
    predicted = (d["steps"] - 200) * 1.5 * rate + 60 * 15 * d["predicted_slowdown"] * d["scale"]
    assert predicted <= left + 1.0
    assert f"revised at step 200 from the {first} steps decided at step 6" in rb.summary()[0]
    # the slow stretch passes: back at the probed rate, the stage grows again (never past its schedule)
    spent_b = 200 * 1.5 * rate + 100 * rate
    grown = plan(300, rate, spent_b, 100).steps
    assert d["steps"] < grown < first
    assert plan(400, 0.01 * rate, spent_b + 100 * 0.01 * rate, 100).steps == 600
    d = json.loads((tmp_path / "budget.json").read_text())["stages"]["b"]
    assert [r["steps"] for r in d["revisions"]] == [first, later.steps, grown]
    assert "3 revisions" in rb.summary()[0]
    # an adversarial phase keeps the earliest start ever decided: growing back never switches it off
    adv = StageSchedule(steps=600, adversarial_start=300)
    assert rb.schedule("b", adv).adversarial_start == round(300 * later.steps / 600)


def test_vct_train_prints_what_the_budget_decided_and_refuses_a_negative_budget(tiny_generator, tmp_path):
    import subprocess
    import sys

    preset = _budget_preset(tmp_path / "budget.yaml", minutes=1e-4)
    base = [sys.executable, "-m", "vctcore.cli", "train", "--cohort", str(tiny_generator["cohort"]),
            "--run", str(tmp_path / "run"), "--preset", str(preset), "--seed", "3", "--quiet"]
    res = subprocess.run([*base, "--stages", "image_ae_1"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "image_ae_1: done at step 3/3" in res.stdout
    assert "time budget: image_ae_1 3/6 steps" in res.stdout
    res = subprocess.run([*base, "--budget-minutes", "-1"], capture_output=True, text=True)
    assert res.returncode == 2 and "--budget-minutes must be positive" in res.stderr
