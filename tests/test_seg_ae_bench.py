"""bench/seg_ae.py: a training run's segmentation AE scored on held-out label maps, decoded as generation decodes."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from bench_scripts import bench_main
from vctcore.cohort import read_attributes
from vctcore.fidelity.recon import reconstruct
from vctcore.generator import Generator
from vctcore.overlap import cohort_dice, dice_per_class
from vctcore.volume import read_ct, read_labels

# generator training and research diagnostics (paused work): run with -m slow
pytestmark = pytest.mark.slow


def _bench():
    return bench_main("seg_ae")


def test_a_finished_runs_segmentation_ae_scores_as_the_generator_reconstructs(tiny_generator):
    run, cohort = tiny_generator["run"], tiny_generator["cohort"]
    out = _bench()(["--run", str(run), "--cohort", str(cohort), "--n", "2", "--threads", "1", "--noise", "0,2",
                    "--min-island-ml", "5"])
    assert out["weights"].endswith("seg_decoder.safetensors") and out["state_step"] is None and out["n"] == 2
    assert 0 <= out["seg_dice_mean"] <= 1 and out["seg_dice_per_class"]
    assert out["fragments_truth"] > 0 and out["fragments"] > 0
    # no noise decodes as the plain reconstruction does
    assert out["latent_noise"]["0"] == {"seg_dice_mean": out["seg_dice_mean"], "fragments": out["fragments"]}
    # stray islands under 5 mL (3 voxels of 2.3 mL) relabelled, as generation decodes with seg_min_island_ml
    assert out["min_island_ml"] == 5 and out["cleaned"]["fragments"] <= out["fragments"]
    assert 0 <= out["cleaned"]["seg_dice_mean"] <= 1 and set(out["cleaned"]["seg_dice_per_class"]) == set(
        out["seg_dice_per_class"])
    assert set(out["latent_noise"]) == {"0", "2"} and 0 <= out["latent_noise"]["2"]["seg_dice_mean"] <= 1
    level = out["seg_ae"]["level"]
    spacing = out["codebook"]
    assert 1 <= spacing["used_codes"] <= level["num_embeddings"]
    if spacing["used_codes"] >= 2:  # the tiny AE may use one code only
        assert 0 < spacing["nearest_used_code_sd_p10"] <= spacing["nearest_used_code_sd"] < 100
    else:
        assert spacing["nearest_used_code_sd"] is None

    # the same figure from the exported generator's own reconstruction (its seg AE is the run's tuned one)
    gen = Generator.from_pretrained(tiny_generator["generator"], device="cpu", post=False)
    per = []
    for pid in read_attributes(cohort)["id"].iloc[:2]:
        pdir = cohort / "patients" / str(pid)
        seg = read_labels(pdir / "seg.nii.gz")
        per.append(dice_per_class(seg.data, reconstruct(gen, read_ct(pdir / "ct.nii.gz"), seg)[1].data))
    assert out["seg_dice_mean"] == pytest.approx(cohort_dice(per)["mean"], abs=0.02)


def test_a_run_still_training_is_scored_from_its_state_and_a_run_without_one_is_refused(tiny_generator, tmp_path):
    run, cohort = tiny_generator["run"], tiny_generator["cohort"]
    training = tmp_path / "training"
    (training / "state").mkdir(parents=True)
    shutil.copy(run / "run.json", training / "run.json")
    shutil.copy(run / "state" / "seg_ae.pt", training / "state" / "seg_ae.pt")
    out = _bench()(["--run", str(training), "--cohort", str(cohort), "--n", "1", "--threads", "1"])
    assert out["weights"].endswith("seg_ae.pt") and out["state_step"] > 0
    assert np.isfinite(out["seg_dice_mean"])
    assert out["min_island_ml"] == 0 and out["cleaned"] is None  # the run's config: no island threshold

    (training / "state" / "seg_ae.pt").unlink()
    with pytest.raises(SystemExit, match="no segmentation AE yet"):
        _bench()(["--run", str(training), "--cohort", str(cohort), "--n", "1"])


def test_used_code_spacing_is_the_use_weighted_distance_to_the_nearest_other_used_code():
    """One channel, codes 0 (2 voxels), 1 and 3: SD sqrt(2); nearest-code distances 1, 1, 2 over sqrt(2)."""
    import torch

    from diagnostics.codebook import used_code_spacing

    z = torch.tensor([0.0, 0.0, 1.0, 3.0]).reshape(1, 4, 1, 1)
    got = used_code_spacing([z[:, :2], z[:, 2:]])
    assert got["used_codes"] == 3
    assert got["nearest_used_code_sd"] == pytest.approx((1 + 1 + 1 + 2) / 4 / np.sqrt(2))
    assert got["nearest_used_code_sd_p10"] == pytest.approx(1 / np.sqrt(2))
    two_channels = torch.stack([z[0], 10 * z[0]])  # a channel scaled by 10 measures the same in SD units
    assert used_code_spacing([two_channels])["nearest_used_code_sd"] == pytest.approx(
        (2 * 1 + 1 + 2) / 4 / np.sqrt(2) * np.sqrt(2))
    assert used_code_spacing([torch.zeros(2, 3, 1, 1)])["nearest_used_code_sd"] is None
    with pytest.raises(ValueError, match="not snapped"):
        used_code_spacing([torch.randn(2, 20000, 1, 1)])


def test_fragments_count_26_connected_components_of_each_organ_class():
    from vctcore.label_islands import fragments

    seg = np.zeros((8, 8, 8), np.uint8)
    seg[0:2, 0:2, 0:2] = 1
    seg[5:7, 5:7, 5:7] = 1  # a second liver-class island
    seg[2, 2, 2] = 1  # touches the first only at a corner: the same component under 26-connectivity
    seg[0:3, 5:8, 0:2] = 2
    assert fragments(seg) == 3
    assert fragments(seg, classes=[2]) == 1
    assert fragments(np.zeros((4, 4, 4), np.uint8)) == 0


def test_a_perturbed_latent_moves_each_channel_by_its_own_spread():
    import torch

    from diagnostics.codebook import perturb_latent

    z = torch.randn(1, 2, 20, 20, 20) * torch.tensor([1.0, 50.0]).reshape(1, 2, 1, 1, 1)
    assert perturb_latent(z, 0.0, seed=1) is z
    a, b = perturb_latent(z, 0.5, seed=1), perturb_latent(z, 0.5, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, perturb_latent(z, 0.5, seed=2))
    moved = ((a - z).std(dim=(0, 2, 3, 4)) / z.std(dim=(0, 2, 3, 4)))
    assert torch.allclose(moved, torch.full((2,), 0.5), atol=0.03)


def test_the_reconstruction_bench_reads_the_held_out_patients_one_at_a_time(tiny_generator):
    """bench/reconstruction.py: PSNR, SSIM and Dice of a generator's autoencoders on the first N patients,
    each read from disk as it is scored (vctcore.cohort.read_first_patients)."""
    cohort = tiny_generator["cohort"]
    out = bench_main("reconstruction")(["--checkpoint", str(tiny_generator["generator"]), "--cohort", str(cohort),
                                        "--n", "2", "--threads", "1"])
    assert out["n"] == 2 and np.isfinite(out["psnr_db_mean"]) and out["psnr_db_min"] <= out["psnr_db_mean"]
    assert -1 <= out["ssim_min"] <= out["ssim_mean"] <= 1 and 0 <= out["seg_dice_mean"] <= 1  # the tiny AE: near 0
    gen = Generator.from_pretrained(tiny_generator["generator"], device="cpu")
    per = []
    for pid in read_attributes(cohort)["id"].iloc[:2]:
        pdir = cohort / "patients" / str(pid)
        seg = read_labels(pdir / "seg.nii.gz")
        per.append(dice_per_class(seg.data, reconstruct(gen, read_ct(pdir / "ct.nii.gz"), seg)[1].data))
    assert out["seg_dice_mean"] == pytest.approx(cohort_dice(per)["mean"], abs=1e-4)
