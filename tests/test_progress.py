"""One progress callback type, progress(done, total, message): staged messages, the trial's stages, and the
command line's bars drawn from them."""
from __future__ import annotations

import json

from vctcore.progress import split_stage, staged


def test_staged_messages_carry_the_stage_and_split_back():
    seen = []
    report = staged(lambda d, t, m: seen.append((d, t, m)), "generate")
    report(1, 3, "S0001")
    report(3, 3)
    assert seen == [(1, 3, "generate: S0001"), (3, 3, "generate")]
    assert split_stage("generate: S0001") == ("generate", "S0001")
    assert split_stage("measure_real: P0001: resumed") == ("measure_real", "P0001: resumed")
    assert split_stage("plots") == ("plots", "")


def test_a_trials_stages_report_through_one_callback_and_progress_json(tmp_path):
    from vctcore.trial.stages import PROGRESS_JSON, Stages

    seen = []
    stages = Stages(tmp_path, lambda d, t, m: seen.append((d, t, m)))
    with stages.stage("generate"):
        stages.callback()(2, 2, "S0001")
    stages.callback("predict")(1, 4, "")
    assert seen == [(2, 2, "generate: S0001"), (1, 4, "predict")]
    state = json.loads((tmp_path / PROGRESS_JSON).read_text())
    assert (state["stage"], state["done"], state["total"], state["label"]) == ("predict", 1, 4, "")
    assert set(stages.seconds) == {"generate"}


def test_the_trial_cli_draws_one_bar_per_stage(monkeypatch):
    import vctcore.cli.trial as cli_trial

    made = []

    def fake_bar(total, desc, unit, quiet):
        calls = []
        made.append((desc, calls))
        return (lambda d, t, label="": calls.append((d, t, label))), (lambda: None)

    monkeypatch.setattr(cli_trial, "progress_bar", fake_bar)
    bars = cli_trial._Bars(quiet=True)
    bars(0, 2, "generate")
    bars(1, 2, "generate: S0000")
    bars(1, 5, "measure_generated: S0000")
    assert made == [("generate", [(0, 2, ""), (1, 2, "S0000")]), ("measure_generated", [(1, 5, "S0000")])]


def test_the_fidelity_cli_draws_one_bar_per_stage():
    from vctcore.cli.evaluate import _StageBars

    bars = _StageBars(quiet=True)
    bars(0, 2, "generate")
    bars(1, 2, "generate: S0000")
    assert bars.stage == "generate" and bars.bar.n == 1
    bars(1, 6, "plots: dice_per_class")
    assert bars.stage == "plots" and (bars.bar.n, bars.bar.total) == (1, 6)
    bars.close()


def test_progress_run_closes_its_bar_and_turns_the_given_errors_into_one_line(monkeypatch):
    import pytest

    from vctcore.cli import common
    from vctcore.cli.common import CLIError, progress_run

    closed = []
    monkeypatch.setattr(common, "progress_bar", lambda *a: (lambda *b: None, lambda: closed.append(a)))
    with progress_run(3, "x", "item", True, (OSError,)) as update:
        update(1, 3)
    with pytest.raises(CLIError, match=r"^writing out: disk full$"):
        with progress_run(3, "x", "item", True, (OSError,), context="writing out: "):
            raise OSError("disk full")
    with pytest.raises(KeyError):  # not one of the given errors: passes through
        with progress_run(3, "x", "item", True, (OSError,)):
            raise KeyError("k")
    assert len(closed) == 3
