"""bench/diffusion_loss.py: a generator's held-out denoising loss per timestep, image and segmentation apart."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "diffusion_loss.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_diffusion_loss", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


def test_held_out_denoising_loss_splits_image_and_segmentation_channels(tiny_generator):
    args = ["--checkpoint", str(tiny_generator["generator"]), "--cohort", str(tiny_generator["cohort"]), "--n", "2",
            "--timesteps", "10,500", "--threads", "1"]
    out = _bench()(args)
    c, c_img = out["latent_channels"], out["image_channels"]
    assert out["n"] == 2 and set(out["loss"]) == {"10", "500"}
    for d in out["loss"].values():
        assert d["image"] > 0 and d["segmentation"] > 0
        # every channel weighs the same in "all"
        assert d["all"] == pytest.approx((c_img * d["image"] + (c - c_img) * d["segmentation"]) / c, abs=2e-4)
    assert _bench()(args)["loss"] == out["loss"]  # the same draws from the same seed
    assert _bench()(args + ["--seed", "1"])["loss"] != out["loss"]


def test_held_out_denoising_loss_refuses_timesteps_outside_the_schedule(tiny_generator):
    import pandas as pd

    from vctcore.evaluate.denoising import held_out_denoising_loss
    from vctcore.generator import Generator

    gen = Generator.from_pretrained(tiny_generator["generator"], device="cpu", post=False)
    with pytest.raises(ValueError, match=r"timesteps \[1000\] outside"):
        held_out_denoising_loss(gen, [], [], pd.DataFrame(), [1000])
    with pytest.raises(ValueError, match="one of each per patient"):
        held_out_denoising_loss(gen, [None], [], pd.DataFrame(), [10])
