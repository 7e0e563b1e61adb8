"""Sex call and image measurements of the fidelity suite on phantoms whose truth is known."""
from __future__ import annotations

import math

import numpy as np
import pytest

from vctcore.fidelity.anatomy import body_mask
from vctcore.fidelity.measures import extent_cm, image_measurements
from vctcore.fidelity.sex import PROSTATE_MIN_ML, call_sex, sex_accuracy
from vctcore.labels import MERGED_CLASS_IDS
from vctcore.measure import measure
from vctcore.phantom import build_phantom
from vctcore.volume import LabelMap

MALE = {"sex": "M", "age_years": 35, "height_cm": 180, "weight_kg": 82, "bfp_pct": 22, "mmp_pct": 40,
        "bone_density_hu": 230}
FEMALE = {"sex": "F", "age_years": 70, "height_cm": 158, "weight_kg": 66, "bfp_pct": 40, "mmp_pct": 27,
          "bone_density_hu": 110}


@pytest.fixture(scope="module")
def phantoms():
    return {"M": build_phantom(MALE, seed=4), "F": build_phantom(FEMALE, seed=5)}


def test_sex_call_on_male_and_female_phantoms(phantoms):
    calls = {}
    for sex, ph in phantoms.items():
        ext = extent_cm(ph.ct, body_mask(ph.ct)) * 10.0
        calls[sex] = call_sex(ph.seg, ext)
        assert calls[sex].sex == sex and calls[sex].basis == "prostate"
    assert calls["M"].prostate_ml >= PROSTATE_MIN_ML and calls["F"].prostate_ml == 0.0
    assert calls["F"].pelvis_index > calls["M"].pelvis_index  # the wider female pelvis
    assert sex_accuracy([calls["M"].sex, calls["F"].sex], ["M", "F"]) == 1.0


def test_a_trace_of_prostate_lets_the_pelvis_decide(phantoms):
    ph = phantoms["F"]
    data = ph.seg.data.copy()
    bladder = np.argwhere(data == MERGED_CLASS_IDS["urinary_bladder"])[0]
    data[tuple(bladder)] = MERGED_CLASS_IDS["prostate"]  # one voxel (0.29 mL): ambiguous
    ext = extent_cm(ph.ct, body_mask(ph.ct)) * 10.0
    call = call_sex(LabelMap(data, ph.seg.affine, ph.seg.names), ext)
    assert call.basis == "pelvis" and 0 < call.prostate_ml < PROSTATE_MIN_ML
    assert call.sex == "F"
    data[data == MERGED_CLASS_IDS["prostate"]] = 0
    data[data == MERGED_CLASS_IDS["urinary_bladder"]] = 0  # no bladder: no pelvis level; the trace says M
    data[tuple(bladder)] = MERGED_CLASS_IDS["prostate"]
    assert call_sex(LabelMap(data, ph.seg.affine, ph.seg.names), ext).sex == "M"


def test_measurements_from_the_merged_map_track_the_truth(phantoms):
    for sex, ph in phantoms.items():
        m = image_measurements(ph.ct, ph.seg)
        truth = measure(ph.ct, ph.labels, height=False)
        assert m["weight_kg"] == pytest.approx(truth.mass_kg, rel=0.02)
        assert m["bfp_pct"] == pytest.approx(truth.bfp_pct, abs=3.5)
        # the lumbar proxy of a merged map vs the L1-L3 measure with vertebra labels
        assert m["bone_density_hu"] == pytest.approx(truth.bone_density_hu, abs=35)
        assert ph.attributes["height_cm"] < m["extent_cm"] < ph.attributes["height_cm"] + 20
    young, old = (image_measurements(phantoms[s].ct, phantoms[s].seg)["bone_density_hu"] for s in ("M", "F"))
    assert young > old + 60  # 230 HU vs 110 HU requested


def test_lumbar_slab_falls_back_to_the_kidneys_then_gives_up(phantoms):
    ph = phantoms["M"]
    data = ph.seg.data.copy()
    with_muscles = image_measurements(ph.ct, ph.seg)["bone_density_hu"]
    data[np.isin(data, [MERGED_CLASS_IDS["gluteus_muscles"], MERGED_CLASS_IDS["iliopsoas"]])] = 0
    by_kidneys = image_measurements(ph.ct, LabelMap(data, ph.seg.affine, ph.seg.names))["bone_density_hu"]
    assert by_kidneys == pytest.approx(with_muscles, abs=40)
    data[data == MERGED_CLASS_IDS["kidney"]] = 0
    m = image_measurements(ph.ct, LabelMap(data, ph.seg.affine, ph.seg.names))
    assert math.isnan(m["bone_density_hu"]) and any("kidneys" in n for n in m["notes"])
