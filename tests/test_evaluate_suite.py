"""End to end: ``vct evaluate-generator`` on the tiny trained generator (the session fixture of
conftest.py) writes fidelity.json (every key), patients.csv and plots, resumes, and refuses to mix
seeds. The default run uses an untrained small segmenter (every stage runs; the figures are those of
a random segmentation) and the session's evaluation (conftest.tiny_evaluation, which the fidelity page
tests read too); the slow test trains a small segmenter first.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from generator_fixtures import ROWS, evaluate_args, write_untrained_segmenter
from vctcore.checkers.segmenter import SegmenterConfig
from vctcore.cohort import CohortWriter
from vctcore.models.checkpoint import sha256_file

METRIC_KEYS = {"joint_seg_dice", "segmenter_dice_on_real", "organ_volume_corr", "organ_centroid_corr",
               "bone_density_by_age_z", "weight_z", "height_z", "sex_correct", "bfp_mae", "mmp_mae",
               "reconstruction", "realism"}
TARGETED = {"joint_seg_dice", "organ_volume_corr", "organ_centroid_corr", "bone_density_by_age_z", "weight_z",
            "height_z", "sex_correct", "bfp_mae", "mmp_mae"}
PLOTS = {"conditioning_bone_density_by_age", "conditioning_weight", "conditioning_height", "organ_volumes",
         "dice_per_class"}


def _vct(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vctcore.cli", *args], capture_output=True, text=True, timeout=900)


def _check_report(out: Path, n: int) -> dict:
    report = json.loads((out / "fidelity.json").read_text())  # strict JSON: no NaN literals
    assert report["schema"] == "vct-fidelity/1" and report["n"] == n
    assert report["device"] == "cpu" and report["device_name"].startswith("cpu: ")
    assert set(report["metrics"]) == METRIC_KEYS
    assert set(report["passed"]) == TARGETED
    for name in TARGETED:
        m = report["metrics"][name]
        assert {"value", "target", "comparison", "pass", "paper"} <= set(m)
        assert m["pass"] == report["passed"][name]
    assert report["all_passed"] == all(report["passed"].values())
    assert len(report["checkpoint"]["sha256"]) == 5 and report["segmenter"]["sha256"]
    assert {"vctcore", "torch", "monai", "numpy"} <= set(report["versions"])
    assert len(report["generation"]["patient_seeds"]) == n and report["real_cohort"]["ids"][0] == "P0000"
    real_dir = Path(report["real_cohort"]["path"])  # the real cohort is named down to its attribute table and maker
    assert report["real_cohort"]["attributes_sha256"] == sha256_file(real_dir / "attributes.csv")
    assert report["real_cohort"]["made_by"]["maker"] == json.loads((real_dir / "cohort.json").read_text())["maker"]
    rec = report["metrics"]["reconstruction"]
    assert rec["n"] == n and 0 < rec["psnr_db"] < 100 and -1 <= rec["ssim"] <= 1
    realism = report["metrics"]["realism"]
    assert realism["floor_real_vs_real"]["mean"] >= 0 and realism["synthetic"]["mean"] >= 0
    assert set(report["plots"]) == PLOTS
    for files in report["plots"].values():
        assert (out / files["json"]).exists() and (out / files["png"]).stat().st_size > 1000
    table = pd.read_csv(out / "patients.csv")
    assert len(table) == n and {"real_id", "synthetic_id", "real_weight_kg", "synthetic_sex_called",
                                "real_sex_image", "synthetic_p_male"} <= set(table)
    # the shipped image sex classifier decides the sex check, and the report names it
    assert report["metrics"]["sex_correct"]["caller"] == "image sex classifier"
    assert len(report["sex_classifier"]["sha256"]) == 64 and report["sex_classifier"]["validation"]["accuracy"] > 0.9
    syn = pd.read_csv(out / "synthetic" / "attributes.csv")
    assert list(syn["real_id"]) == [f"P{i:04d}" for i in range(n)]  # one-to-one matching
    assert list(syn["sex"]) == [r["sex"] for r in ROWS[:n]]
    return report


def test_evaluate_generator_end_to_end(tiny_generator, tiny_evaluation, tmp_path):
    # the first run is the session's (conftest.tiny_evaluation, also read by the fidelity page tests)
    out, args, res = tiny_evaluation["out"], tiny_evaluation["args"], tiny_evaluation["proc"]
    assert res.returncode == 0, res.stderr
    assert "joint_seg_dice" in res.stdout and "wrote" in res.stdout
    first = _check_report(out, 3)
    # a rerun reuses the synthetic cohort and every cached record
    ct = out / "synthetic" / "patients" / "S0001" / "ct.nii.gz"
    cached = out / "cache" / "real" / "P0002.json"
    stamps = (ct.stat().st_mtime_ns, cached.stat().st_mtime_ns)
    res = _vct(*args)
    assert res.returncode == 0, res.stderr
    assert (ct.stat().st_mtime_ns, cached.stat().st_mtime_ns) == stamps
    second = json.loads((out / "fidelity.json").read_text())
    assert second["metrics"]["joint_seg_dice"] == first["metrics"]["joint_seg_dice"]
    # another seed does not mix into this synthetic cohort: one-line error, exit 2
    res = _vct(*args, "--seed", "7")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "seed differ" in res.stderr
    # the headline figures go into a model card, merged with what the card already holds
    from vctcore.fidelity.summary import fidelity_card_metrics
    from vctcore.train.model_card import update_model_card

    gen = tmp_path / "gen"
    shutil.copytree(tiny_generator["generator"], gen)
    update_model_card(gen, {"reconstruction.psnr_db": {"value": 31.5, "target": ">= 30", "definition": "PSNR"}})
    card = update_model_card(gen, fidelity_card_metrics(second)).read_text()
    metrics = json.loads((gen / "metrics.json").read_text())
    assert metrics["reconstruction.psnr_db"]["value"] == 31.5
    assert metrics["fidelity.joint_seg_dice"]["value"] == second["metrics"]["joint_seg_dice"]["value"]
    assert "fidelity.organ_volume_corr" in card and "n=3 matched pairs" in card


def test_missing_segmenter_is_a_one_line_error(tiny_generator, tmp_path):
    real = tmp_path / "real"
    CohortWriter(real, {}).write_attributes(pd.DataFrame([{"id": "P0000", **ROWS[0]}]))
    res = _vct("evaluate-generator", "--checkpoint", str(tiny_generator["generator"]), "--real", str(real), "--n", "1",
               "--out", str(tmp_path / "o"), "--segmenter", "unet", "--segmenter-path", str(tmp_path / "none"),
               "--quiet")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "vct train-segmenter" in res.stderr
    seg = write_untrained_segmenter(tmp_path / "seg")
    res = _vct("evaluate-generator", "--checkpoint", str(tiny_generator["generator"]), "--real", str(real), "--n", "1",
               "--out", str(tmp_path / "o"), "--segmenter", "unet", "--segmenter-path", str(seg),
               "--sex-classifier", str(tmp_path / "none"), "--quiet")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "vct train-sex-classifier" in res.stderr


@pytest.mark.slow
def test_evaluate_generator_with_a_trained_segmenter(tiny_generator, tmp_path):
    from vctcore.checkers.segmenter_train import SegTrainConfig, train_segmenter

    seg = tmp_path / "seg"
    train_segmenter(tiny_generator["cohort"], seg, cfg=SegmenterConfig(channels=(8, 16, 32)),
                    train=SegTrainConfig(steps=40, batch_size=2, patch_z=None, lr=3e-3))
    out = tmp_path / "eval"
    res = _vct(*evaluate_args(tiny_generator, seg, out))
    assert res.returncode == 0, res.stderr
    rep = _check_report(out, 3)
    m = rep["metrics"]
    assert 0.0 <= m["segmenter_dice_on_real"]["value"] <= 1.0
    # the real images' weight needs no segmentation: it matches the phantoms' recorded weight
    for measured, row in zip(m["weight_z"]["values"]["real"], ROWS):
        assert measured == pytest.approx(row["weight_kg"], rel=0.03)
    assert m["weight_z"]["n_real_measured"] == 3
    assert rep["timing"]["synthetic_eval_s_per_patient"] < 60
