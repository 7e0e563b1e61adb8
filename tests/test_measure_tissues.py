"""Tissue volumes of a real CT against TotalSegmentator's tissue-types reference masks of the same scan.

Data (tests/data/README.md): ``ts_tissue_types/{subcutaneous_fat,torso_fat,skeletal_muscle}.nii.gz`` are
TotalSegmentator's ``tissue_types`` output on its ``example_ct_sm.nii.gz`` (122 x 101 x 30 voxels, 3 mm,
an upper-abdominal slab), whose voxels are slices 82-111 of the shipped ``ts_example_ct.nii.gz``; the
test rebuilds that CT from them, on the masks' own grid. ``ts_example_seg.nii.gz`` (TotalSegmentator
``total``, fast model) is cropped the same way.

Observed on this slab (reference: subcutaneous fat 0.955 L, skeletal muscle 0.953 L, torso fat 0.917 L):

* threshold backend: subcutaneous fat 0.941 L (-1.4 %, Dice 0.83 with the reference mask); soft tissue
  at -29..150 HU 3.70 L, 3.9 times the reference skeletal muscle: liver, spleen, kidneys, bowel wall and
  vessels share that HU range. It is reported as soft tissue; no muscle mass and no MMP.
* labels backend with the ``total`` map (organs, vertebrae, autochthon/iliopsoas muscles labelled,
  the rest by thresholds): subcutaneous fat 0.938 L (-1.7 %); skeletal muscle 1.63 L, 1.7 times the
  reference (Dice 0.70): tissue the ``total`` task does not label (diaphragm, bowel wall outside the
  labelled bowel, mesenteric vessels, skin) falls in the muscle range, as the record's notes say.
* visceral fat 1.33 L (threshold) and 1.19 L (labels) against ``torso_fat`` 0.92 L: not compared, as
  the reference's torso fat and our enclosed-fat definition differ.

Tolerances: subcutaneous fat within 5 % of the reference volume (the issue's "a few percent"; the two
methods place the skin and fascia borders differently voxel by voxel, Dice 0.83, but the volume errors
cancel to 1.4-1.7 % here, so 5 % leaves a 3x margin for decoder or platform differences without
admitting a real change such as fat read as soft tissue). The soft-tissue and label-muscle ratios are
held to bands around the observed 3.9 and 1.7, which document them rather than bless them.
"""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from vctcore.labels import FINE_LABELS
from vctcore.measure import measure, segment
from vctcore.measure.composition import MUSCLE_VALUES
from vctcore.volume import CTVolume, LabelMap, read_ct, read_labels

DATA = Path(__file__).parent / "data"
REFERENCE = DATA / "ts_tissue_types"
SM_SLICES = slice(82, 112)  # example_ct_sm.nii.gz == ts_example_ct.nii.gz[:, :, 82:112], voxel for voxel


@pytest.fixture(scope="module")
def slab():
    """The CT TotalSegmentator's tissue masks were made on, its ``total`` labels, and the reference masks."""
    masks = {name: nib.load(REFERENCE / f"{name}.nii.gz") for name in ("subcutaneous_fat", "torso_fat",
                                                                        "skeletal_muscle")}
    affine = masks["skeletal_muscle"].affine
    assert nib.aff2axcodes(affine) == ("R", "A", "S")  # already canonical: mask arrays index like ours
    full = read_ct(DATA / "ts_example_ct.nii.gz")
    seg = read_labels(DATA / "ts_example_seg.nii.gz", like=full)
    ct = CTVolume(data=np.ascontiguousarray(full.data[:, :, SM_SLICES]), affine=affine)
    labels = LabelMap(data=np.ascontiguousarray(seg.data[:, :, SM_SLICES]), affine=affine, names=seg.names)
    ref = {name: np.asarray(img.dataobj) > 0 for name, img in masks.items()}
    assert all(mask.shape == ct.shape == (122, 101, 30) for mask in ref.values())
    return ct, labels, ref


def _litres(mask: np.ndarray, ct: CTVolume) -> float:
    return float(mask.sum()) * ct.voxel_volume_ml / 1000.0


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_threshold_subcutaneous_fat_agrees_and_soft_tissue_is_not_called_muscle(slab):
    ct, _, ref = slab
    m = measure(ct, backend="threshold")
    sat_ref, muscle_ref = _litres(ref["subcutaneous_fat"], ct), _litres(ref["skeletal_muscle"], ct)
    assert m.scan_volume_l["subcutaneous_fat"] == pytest.approx(sat_ref, rel=0.05)
    labels = segment(ct, None, "threshold").labels
    assert _dice(labels == FINE_LABELS["subcutaneous_fat"], ref["subcutaneous_fat"]) > 0.75
    # soft tissue, honestly named: several times the skeletal muscle, so never reported as muscle
    assert "muscle" not in m.scan_volume_l and m.muscle_kg is None and m.mmp_pct is None
    assert 3.0 < m.scan_volume_l["soft_tissue"] / muscle_ref < 5.0
    assert "identifies muscle" in m.not_measurable["mmp_pct"]


def test_labels_backend_with_totalsegmentator_map(slab):
    ct, labels, ref = slab
    m = measure(ct, labels)
    assert m.vocabulary == "totalsegmentator" and m.soft_tissue_kg is None and "soft_tissue" not in m.scan_volume_l
    sat_ref, muscle_ref = _litres(ref["subcutaneous_fat"], ct), _litres(ref["skeletal_muscle"], ct)
    assert m.scan_volume_l["subcutaneous_fat"] == pytest.approx(sat_ref, rel=0.05)
    ratio = m.scan_volume_l["muscle"] / muscle_ref
    assert 1.4 < ratio < 2.0, ratio  # unlabelled tissue in the muscle HU range (documented above)
    assert any("skeletal muscle outside its labelled structures come from HU thresholds" in n for n in m.notes)
    muscle = np.isin(segment(ct, labels, "labels").labels, MUSCLE_VALUES)
    assert _dice(muscle, ref["skeletal_muscle"]) > 0.6
