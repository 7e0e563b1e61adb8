"""Measurement of a real CT scan of a person (not a phantom).

Data: ``tests/data/ts_example_ct.nii.gz``, a real abdominal-pelvic CT (3 mm, about T11 to the proximal
femurs) and ``ts_example_seg.nii.gz``, its TotalSegmentator ``total`` segmentation, both from the
TotalSegmentator repository (github.com/wasserth/TotalSegmentator, tests/reference_files, commit
0e65a448; Apache License 2.0; see tests/data/README.md for checksums and citation).

Observed (labels backend with the TotalSegmentator map): partial scan (cut at both ends, 34 cm),
bone density L1-L3 about 121 HU (L1 130, L2 120, L3 115), at L3 subcutaneous fat about 216 cm²,
visceral fat about 141 cm², muscle about 191 cm² at about 15 HU.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from vctcore.measure import measure
from vctcore.measure.api import MUSCLE_FIELDS
from vctcore.measure.record import WHOLE_BODY_FIELDS
from vctcore.volume import read_ct, read_labels

DATA = Path(__file__).parent / "data"
CT, SEG = DATA / "ts_example_ct.nii.gz", DATA / "ts_example_seg.nii.gz"

pytestmark = pytest.mark.skipif(not CT.exists(), reason=f"real CT test data missing: {CT}")


@pytest.fixture(scope="module")
def ct():
    return read_ct(CT)


@pytest.fixture(scope="module")
def with_labels(ct):
    return measure(ct, read_labels(SEG, like=ct))


def test_totalsegmentator_map_is_recognised(with_labels):
    m = with_labels
    assert m.backend == "labels" and m.vocabulary == "totalsegmentator"
    regions = m.coverage["regions"]
    assert regions["abdomen"] and regions["pelvis"] and regions["head_neck"] is False


def test_partial_scan_reports_no_whole_body_numbers(ct, with_labels):
    for m in (with_labels, measure(ct, backend="threshold")):
        assert not m.coverage["whole_body"] and m.coverage["cut_superior"] and m.coverage["cut_inferior"]
        for name in WHOLE_BODY_FIELDS:
            why = "identifies muscle" if m.backend == "threshold" and name in MUSCLE_FIELDS else "partial scan"
            assert getattr(m, name) is None and why in m.not_measurable[name]
        assert any("whole-body quantities" in w for w in m.warnings)
        assert 25 < m.coverage["body_extent_cm"] < 40
        assert 15 < m.scan_volume_l["body"] < 40  # a 34 cm abdominal slab of an adult


def test_local_measurements_are_plausible(with_labels):
    m = with_labels
    assert set(m.bone_density_levels_hu) == {"L1", "L2", "L3"}
    assert 50 < m.bone_density_hu < 300  # adult lumbar trabecular bone, HU
    assert 80 < m.l3_muscle_area_cm2 < 300  # adult skeletal-muscle area at L3
    assert 20 < m.l3_sat_area_cm2 < 600 and 10 < m.l3_vat_area_cm2 < 400
    assert -20 < m.l3_muscle_hu < 70
    assert -120 < m.scan_mean_hu["subcutaneous_fat"] < -60
    assert 0 < m.scan_volume_l["bone"] < 5


def test_threshold_backend_on_real_ct(ct, with_labels):
    m = measure(ct, backend="threshold")
    assert m.vocabulary == "threshold"
    assert m.bone_density_hu is None and "does not identify vertebrae" in m.not_measurable["bone_density_hu"]
    # same body outline as the labelled run (both use the HU body mask), patient table excluded
    assert m.scan_volume_l["body"] == pytest.approx(with_labels.scan_volume_l["body"], rel=0.02)
    fat = m.scan_volume_l["subcutaneous_fat"] + m.scan_volume_l["visceral_fat"]
    assert 0.2 < fat / m.scan_volume_l["body"] < 0.7
