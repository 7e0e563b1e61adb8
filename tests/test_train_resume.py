"""A stage stopped and resumed trains exactly what an uninterrupted one trains: its state holds the
sampler's and every torch generator's position (noise, timesteps, condition dropout)."""
from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from vctcore.train.run import train

# generator training and research diagnostics (paused work): run with -m slow
pytestmark = pytest.mark.slow

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))]


def _without(run, stage: str, dest):
    """A copy of the finished tiny run with ``stage`` not yet trained."""
    shutil.copytree(run, dest)
    for path in (dest / "models" / f"{stage}.safetensors", dest / "state" / f"{stage}.pt",
                 dest / "logs" / f"{stage}.csv", dest / "generator"):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    return dest


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("stage", ["diffusion", "post"])
def test_a_stopped_and_resumed_stage_equals_an_uninterrupted_one(tiny_generator, tmp_path, stage, device):
    g = tiny_generator
    whole = _without(g["run"], stage, tmp_path / "whole")
    paused = _without(g["run"], stage, tmp_path / "paused")
    kw = dict(preset=g["preset"], seed=3, stages=[stage], device=device)
    assert train(g["cohort"], whole, **kw).results[-1].finished
    first = train(g["cohort"], paused, max_minutes=1e-6, **kw)
    assert not first.results[-1].finished and 0 < first.results[-1].step
    assert train(g["cohort"], paused, **kw).results[-1].finished
    a, b = (load_file(str(r / "models" / f"{stage}.safetensors")) for r in (whole, paused))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=f"{stage} {k} differs after resuming")
