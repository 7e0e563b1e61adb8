"""bench/diffusion_loss.py: a generator's held-out denoising loss per timestep, image and segmentation apart."""
from __future__ import annotations

import pytest

from bench_scripts import bench_main

# generator training and research diagnostics (paused work): run with -m slow
pytestmark = pytest.mark.slow


def _bench():
    return bench_main("diffusion_loss")


def test_held_out_denoising_loss_splits_image_and_segmentation_channels(tiny_generator):
    args = ["--checkpoint", str(tiny_generator["generator"]), "--cohort", str(tiny_generator["cohort"]), "--n", "2",
            "--timesteps", "10,500", "--threads", "1"]
    out = _bench()(args)
    c, c_img = out["latent_channels"], out["image_channels"]
    assert out["n"] == 2 and set(out["loss"]) == {"10", "500"}
    for d in out["loss"].values():
        assert d["image"] > 0 and d["segmentation"] > 0
        assert d["image_bound"] >= 0 and d["segmentation_bound"] >= 0
        # every channel weighs the same in "all"
        assert d["all"] == pytest.approx((c_img * d["image"] + (c - c_img) * d["segmentation"]) / c, abs=2e-4)
    assert _bench()(args)["loss"] == out["loss"]  # the same draws from the same seed
    assert _bench()(args + ["--seed", "1"])["loss"] != out["loss"]


def test_held_out_denoising_loss_refuses_timesteps_outside_the_schedule(tiny_generator):
    import pandas as pd

    from diagnostics.denoising import held_out_denoising_loss
    from vctcore.generator import Generator

    gen = Generator.from_pretrained(tiny_generator["generator"], device="cpu", post=False)
    with pytest.raises(ValueError, match=r"timesteps \[1000\] outside"):
        held_out_denoising_loss(gen, [], [], pd.DataFrame(), [1000])
    with pytest.raises(ValueError, match="one of each per patient"):
        held_out_denoising_loss(gen, [None], [], pd.DataFrame(), [10])


def test_a_runs_diffusion_is_scored_finished_or_still_training(tiny_generator, tmp_path):
    """--run reads the run's own networks: its finished diffusion scores as the exported generator does
    (which stores it in float16), and a run whose diffusion still trains is scored from the EMA weights of
    its state; a run without a diffusion is refused."""
    import shutil

    run, cohort = tiny_generator["run"], tiny_generator["cohort"]
    common = ["--cohort", str(cohort), "--n", "2", "--timesteps", "10,500", "--threads", "1"]
    finished = _bench()(["--run", str(run), *common])
    exported = _bench()(["--checkpoint", str(tiny_generator["generator"]), *common])
    assert finished["diffusion_state_step"] is None
    for t, d in finished["loss"].items():
        assert d["all"] == pytest.approx(exported["loss"][t]["all"], rel=0.05)

    training = tmp_path / "training"
    shutil.copytree(run / "models", training / "models")
    (training / "models" / "diffusion.safetensors").unlink()
    shutil.copy(run / "run.json", training / "run.json")
    with pytest.raises(SystemExit, match="no diffusion yet"):
        _bench()(["--run", str(training), *common])
    (training / "state").mkdir()
    shutil.copy(run / "state" / "diffusion.pt", training / "state" / "diffusion.pt")
    mid = _bench()(["--run", str(training), *common])
    assert mid["diffusion_state_step"] > 0 and mid["loss"]["10"]["all"] > 0
    with pytest.raises(SystemExit, match="not both"):
        _bench()(["--run", str(training), "--checkpoint", str(tiny_generator["generator"]), *common])


def test_per_voxel_bound_matches_the_closed_forms():
    """One code: nothing to confuse, zero error. A dense Gaussian codebook: the velocity is independent of
    the noisy voxel, so the best prediction is 0 and the error its variance, 1; the noise's error is
    alpha_bar (its posterior mean is sqrt(1 - alpha_bar) z_t)."""
    import torch

    from diagnostics.denoising import per_voxel_bound

    ac = torch.linspace(0.99, 0.05, 1000)
    one = per_voxel_bound(torch.zeros(1, 3), torch.ones(1), ac, [10, 500])
    assert one[10] == pytest.approx(0, abs=1e-9) and one[500] == pytest.approx(0, abs=1e-9)
    far = per_voxel_bound(torch.tensor([[0.0], [100.0]]), torch.tensor([3, 1]), ac, [10])
    assert far[10] == pytest.approx(0, abs=1e-9)
    dense = torch.randn(6000, 1, generator=torch.Generator().manual_seed(0))
    v = per_voxel_bound(dense, torch.ones(6000), ac, [10, 500], n=8000)
    assert v[10] == pytest.approx(1, abs=0.06) and v[500] == pytest.approx(1, abs=0.06)
    eps = per_voxel_bound(dense, torch.ones(6000), ac, [10, 500], prediction_type="epsilon", n=8000)
    assert eps[10] == pytest.approx(float(ac[10]), abs=0.06) and eps[500] == pytest.approx(float(ac[500]), abs=0.06)


def test_benches_refuse_a_held_out_cohort_off_the_models_grid_naming_the_patient(tiny_generator, tmp_path):
    """The held-out readers of bench/diffusion_loss.py, bench/reconstruction.py and bench/seg_ae.py
    (vctcore.cohort.read_first_patients) name the patient whose volume is on another grid."""
    import shutil

    import numpy as np

    from vctcore.cohort import read_attributes, read_first_patients
    from vctcore.volume import LabelMap, read_labels, write_labels

    cohort = tmp_path / "cohort"
    shutil.copytree(tiny_generator["cohort"], cohort)
    second = read_attributes(cohort)["id"].iloc[1]
    lab = read_labels(cohort / "patients" / second / "seg.nii.gz")
    write_labels(LabelMap(np.ascontiguousarray(lab.data[:-2]), lab.affine, lab.names),
                 cohort / "patients" / second / "seg.nii.gz")
    grid = tuple(lab.data.shape)
    table, cts, segs = read_first_patients(cohort, 1, grid)
    assert len(table) == len(cts) == len(segs) == 1 and cts[0].data.shape == grid
    with pytest.raises(ValueError, match=f"not on the grid .*, patients {second}$"):
        read_first_patients(cohort, 2, grid, ct=False)
    common = ["--cohort", str(cohort), "--n", "2", "--threads", "1"]
    with pytest.raises(SystemExit, match=f"not on the grid .*, patients {second}$"):
        _bench()(["--checkpoint", str(tiny_generator["generator"]), *common, "--timesteps", "10"])
    with pytest.raises(SystemExit, match=f"not on the grid .*, patients {second}$"):
        bench_main("reconstruction")(["--checkpoint", str(tiny_generator["generator"]), *common])
    with pytest.raises(SystemExit, match=f"not on the grid .*, patients {second}$"):
        bench_main("seg_ae")(["--run", str(tiny_generator["run"]), *common])
