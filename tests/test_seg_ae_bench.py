"""bench/seg_ae.py: a training run's segmentation AE scored on held-out label maps, decoded as generation decodes."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from vctcore.cohort import read_attributes
from vctcore.evaluate.overlap import cohort_dice, dice_per_class
from vctcore.evaluate.recon import reconstruct
from vctcore.generator import Generator
from vctcore.volume import read_ct, read_labels

BENCH = Path(__file__).resolve().parents[1] / "bench" / "seg_ae.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_seg_ae", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


def test_a_finished_runs_segmentation_ae_scores_as_the_generator_reconstructs(tiny_generator):
    run, cohort = tiny_generator["run"], tiny_generator["cohort"]
    out = _bench()(["--run", str(run), "--cohort", str(cohort), "--n", "2", "--threads", "1"])
    assert out["weights"].endswith("seg_decoder.safetensors") and out["state_step"] is None and out["n"] == 2
    assert 0 <= out["seg_dice_mean"] <= 1 and out["seg_dice_per_class"]

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

    (training / "state" / "seg_ae.pt").unlink()
    with pytest.raises(SystemExit, match="no segmentation AE yet"):
        _bench()(["--run", str(training), "--cohort", str(cohort), "--n", "1"])
