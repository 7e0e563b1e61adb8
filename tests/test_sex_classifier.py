"""The image sex classifier of the fidelity suite: trains on a small real cohort, saves with its manifest,
loads (refusing tampered files), calls fresh phantoms right, and decides the sex check when present."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from generator_fixtures import flip_byte
from vctcore.checkers.sex_classifier import (DEFAULT_SEX_CLASSIFIER, SexTrainConfig, load_sex_classifier,
                                             train_sex_classifier)
from vctcore.cohort import CohortWriter
from vctcore.fidelity.metrics import _sex_correct
from vctcore.models.checkpoint import CheckpointError
from vctcore.phantom.builder import build_phantom

MALE = {"sex": "M", "age_years": 52, "height_cm": 176, "weight_kg": 90, "bfp_pct": 27, "mmp_pct": 36,
        "bone_density_hu": 160}
FEMALE = {"sex": "F", "age_years": 41, "height_cm": 166, "weight_kg": 62, "bfp_pct": 33, "mmp_pct": 30,
          "bone_density_hu": 190}


def test_train_save_load_and_call(tiny_generator, tmp_path):
    out = tmp_path / "clf"
    clf = train_sex_classifier(tiny_generator["cohort"], out, train=SexTrainConfig(steps=6, batch_size=2),
                               val=tiny_generator["cohort"])
    man = json.loads((out / "manifest.json").read_text())
    assert man["kind"] == "sex_classifier" and len(man["sha256"]) == 64
    assert man["training"]["n_patients"] == 6 and man["training"]["n_male"] == 3 and man["training"]["steps"] == 6
    assert 0.0 <= man["validation"]["accuracy"] <= 1.0 and "torch" in man["versions"]
    ph = build_phantom(MALE, seed=3)
    again = load_sex_classifier(out)
    call = again.call(ph.ct)
    assert call["sex"] in ("F", "M") and 0.0 <= call["p_male"] <= 1.0
    assert again.p_male(ph.ct) == pytest.approx(clf.p_male(ph.ct), abs=1e-6)  # the file holds the trained net


def test_training_needs_both_sexes_and_known_values(tiny_generator, tmp_path):
    with pytest.raises(ValueError, match="needs both sexes"):
        train_sex_classifier(tiny_generator["cohort"], tmp_path / "a", train=SexTrainConfig(steps=1), limit=1)
    bad = tmp_path / "bad"
    shutil.copytree(tiny_generator["cohort"], bad)
    table = pd.read_csv(bad / "attributes.csv")
    table.loc[0, "sex"] = "X"
    CohortWriter(bad, {}).write_attributes(table)
    with pytest.raises(ValueError, match=r"sex must be F or M, found \['X'\]"):
        train_sex_classifier(bad, tmp_path / "b", train=SexTrainConfig(steps=1))


def test_tampered_or_missing_classifier_is_refused_by_name(tmp_path):
    copy = tmp_path / "clf"
    shutil.copytree(DEFAULT_SEX_CLASSIFIER, copy)
    flip_byte(copy / "sex_classifier.safetensors")
    with pytest.raises(CheckpointError, match="sex_classifier.safetensors: sha256 differs"):
        load_sex_classifier(copy)
    with pytest.raises(CheckpointError, match="vct train-sex-classifier"):
        load_sex_classifier(tmp_path / "nothing")


def test_shipped_classifier_calls_fresh_phantoms():
    clf = load_sex_classifier()
    assert clf.manifest["validation"]["accuracy"] >= 0.95
    for attrs in (MALE, FEMALE):
        for seed in (7, 8):
            call = clf.call(build_phantom(attrs, seed=seed).ct)
            assert call["sex"] == attrs["sex"], (attrs["sex"], seed, call)


def _rec(requested: str, rule: str, image: str | None) -> dict:
    rec = {"requested": {"sex": requested}, "sex": {"sex": rule}, "sex_joint": {"sex": requested}}
    if image is not None:
        rec["sex_image"] = {"sex": image, "p_male": 0.9 if image == "M" else 0.1}
    return rec


def test_sex_check_uses_the_image_classifier_when_every_record_has_it():
    real = [_rec("M", "F", "M"), _rec("F", "F", "F"), _rec("M", "F", "M"), _rec("F", "F", "F")]
    syn = [_rec("M", "F", "M"), _rec("F", "F", "F"), _rec("M", "F", "F"), _rec("F", "F", "F")]
    m = _sex_correct(real, syn)
    assert m["caller"] == "image sex classifier" and m["value"] == 0.75 and m["real_value"] == 1.0
    assert m["segmentation_rule_value"] == 0.5 and m["segmentation_rule_real_value"] == 0.5
    assert m["joint_seg_value"] == 1.0 and m["pass"] is False
    # one record without the image call (e.g. no classifier): the segmentation rule decides
    syn[0].pop("sex_image")
    m = _sex_correct(real, syn)
    assert m["caller"] == "segmentation rule" and m["value"] == 0.5
    assert np.isclose(_sex_correct(real, [_rec("M", "M", "M")] * 4)["value"], 1.0)
