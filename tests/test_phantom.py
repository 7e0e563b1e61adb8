"""The digital-human phantom: self-consistency with its requested attributes (issue #3 'done means')."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from vctcore.labels import FAT_LABELS, FINE_LABELS, MERGED_CLASSES, MUSCLE_LABELS
from vctcore.phantom import DEFAULT_GRID, Pose, build_phantom
from vctcore.phantom.builder import REQUIRED, supported_rows
from vctcore.population import PopulationSpec

REFERENCE = "assets/populations/adult_reference.yaml"


def appendix_b_composition(hu: np.ndarray, labels: np.ndarray, voxel_ml: float) -> tuple[float, float, float]:
    """Mass (kg), BFP and MMP (%) computed here from scratch: rho = (HU + 1000) / 1000, HU <= -900 -> air."""
    rho = (np.where(hu <= -900, -1000.0, hu.astype(np.float64)) + 1000.0) / 1000.0
    body = labels > 0
    fat = np.isin(labels, [FINE_LABELS[n] for n in FAT_LABELS])
    muscle = np.isin(labels, [FINE_LABELS[n] for n in MUSCLE_LABELS])
    mass = rho[body].sum() * voxel_ml / 1000.0
    return mass, 100 * rho[fat].sum() * voxel_ml / 1000.0 / mass, 100 * rho[muscle].sum() * voxel_ml / 1000.0 / mass


@pytest.fixture(scope="module")
def reference_rows():
    """The first 20 rows of the adult reference population inside the phantom's support."""
    return supported_rows(PopulationSpec.from_yaml(REFERENCE).sample(40, seed=2026), 20)


#: the requested attributes whose smallest and largest value in the sample pick the fast set's rows
EDGE_ATTRIBUTES = ("height_cm", "weight_kg", "bfp_pct", "mmp_pct")


def edge_positions(rows) -> list[int]:
    """Positions of the rows holding the smallest or the largest value of an EDGE_ATTRIBUTES column (where the
    phantom's calibration is hardest to meet; 5 of the 20 reference rows, both sexes)."""
    return sorted({int(np.argmin(rows[c].to_numpy())) for c in EDGE_ATTRIBUTES}
                  | {int(np.argmax(rows[c].to_numpy())) for c in EDGE_ATTRIBUTES})


def standing(rows, positions) -> list[tuple[object, object]]:
    """(row, standing phantom) for each row position; the phantom seed is the row's position."""
    return [(rows.iloc[i], build_phantom({k: rows.iloc[i][k] for k in REQUIRED}, seed=i, pose="standing"))
            for i in positions]


@pytest.fixture(scope="module")
def standing_phantoms(reference_rows):
    """The fast set: standing phantoms of the edge rows (edge_positions); all 20 rows in the slow test."""
    positions = edge_positions(reference_rows)
    assert len(positions) >= 4 and set(reference_rows.iloc[positions]["sex"]) == {"F", "M"}
    return standing(reference_rows, positions)


def check_composition(cases) -> None:
    for row, ph in cases:
        mass, bfp, mmp = appendix_b_composition(ph.ct.data, ph.labels.data, ph.ct.voxel_volume_ml)
        assert abs(mass - row.weight_kg) / row.weight_kg < 0.03, (row.id, mass, row.weight_kg)
        assert abs(bfp - row.bfp_pct) < 1.5, (row.id, bfp, row.bfp_pct)
        assert abs(mmp - row.mmp_pct) < 1.5, (row.id, mmp, row.mmp_pct)


def check_standing_extent(cases) -> None:
    dz = DEFAULT_GRID.spacing_mm[2]
    for row, ph in cases:
        slices = np.flatnonzero(ph.labels.data.any(axis=(0, 1)))
        extent_cm = (slices[-1] - slices[0] + 1) * dz / 10.0
        assert abs(extent_cm - row.height_cm) < 2.0, (row.id, extent_cm, row.height_cm)


def test_mass_and_composition_match_request(standing_phantoms):
    check_composition(standing_phantoms)


def test_standing_extent_matches_height(standing_phantoms):
    check_standing_extent(standing_phantoms)


@pytest.mark.slow
def test_mass_composition_and_extent_match_request_on_all_20_rows(reference_rows):
    cases = standing(reference_rows, range(len(reference_rows)))
    check_composition(cases)
    check_standing_extent(cases)


def test_supine_pose_varies_and_keeps_mass(reference_rows):
    poses = []
    for i, (_, row) in enumerate(reference_rows.head(4).iterrows()):
        ph = build_phantom({k: row[k] for k in REQUIRED}, seed=100 + i, pose="supine")
        mass, bfp, mmp = appendix_b_composition(ph.ct.data, ph.labels.data, ph.ct.voxel_volume_ml)
        assert abs(mass - row.weight_kg) / row.weight_kg < 0.03
        assert abs(bfp - row.bfp_pct) < 1.5 and abs(mmp - row.mmp_pct) < 1.5
        poses.append(ph.pose)
    assert any(p.foot_flex_deg[0] > 10 for p in poses)  # pointed feet make naive height wrong
    assert len({p.hip_flex_deg for p in poses}) == len(poses)


def test_same_seed_same_volume_and_other_seed_differs():
    attrs = dict(sex="F", age_years=40, height_cm=165, weight_kg=62, bfp_pct=32, mmp_pct=30, bone_density_hu=180)
    a, b = build_phantom(attrs, seed=5), build_phantom(attrs, seed=5)
    c = build_phantom(attrs, seed=6)
    np.testing.assert_array_equal(a.ct.data, b.ct.data)
    np.testing.assert_array_equal(a.labels.data, b.labels.data)
    assert not np.array_equal(a.ct.data, c.ct.data)


@pytest.fixture(scope="module")
def male():
    return build_phantom(dict(sex="M", age_years=60, height_cm=180, weight_kg=85, bfp_pct=27, mmp_pct=35,
                              bone_density_hu=140), seed=3, pose="standing")


def test_fine_labels_cover_the_anatomy(male):
    present = set(np.unique(male.labels.data).tolist())
    needed = ["skull", "brain", "vertebrae_C1", "vertebrae_C2", "vertebrae_C7", "vertebrae_L3", "sacrum",
              "hip_left", "hip_right", "femur_left", "femur_right", "tibia_left", "tibia_right",
              "lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right", "lung_middle_lobe_right",
              "lung_lower_lobe_right", "heart", "aorta", "liver", "spleen", "kidney_left", "kidney_right",
              "urinary_bladder", "prostate", "gluteus_left", "autochthon_right", "iliopsoas_left",
              "skeletal_muscle", "subcutaneous_fat", "visceral_fat", "clavicula_left", "scapula_right", "ribs"]
    missing = [n for n in needed if FINE_LABELS[n] not in present]
    assert not missing
    assert set(np.unique(male.seg.data).tolist()) == set(MERGED_CLASSES)  # all 16 classes + background


def test_c1_above_c2_above_c7_and_left_is_left(male):
    lab, aff = male.labels.data, male.labels.affine

    def centroid(name: str) -> np.ndarray:
        idx = np.argwhere(lab == FINE_LABELS[name]).mean(axis=0)
        return aff[:3, :3] @ idx + aff[:3, 3]

    assert centroid("vertebrae_C1")[2] > centroid("vertebrae_C2")[2] > centroid("vertebrae_C7")[2]
    assert centroid("femur_left")[0] < 0 < centroid("femur_right")[0]  # RAS+: patient left is -x
    assert centroid("liver")[0] > 0 > centroid("spleen")[0]


def test_tissue_attenuation_is_ct_like(male):
    hu, lab = male.ct.data, male.labels.data

    def median(name: str) -> float:
        return float(np.median(hu[lab == FINE_LABELS[name]]))

    assert -130 < median("subcutaneous_fat") < -60
    assert 20 < median("skeletal_muscle") < 70
    assert median("lung_lower_lobe_left") < -600
    assert median("femur_left") > 150
    assert float(hu[lab == 0].mean()) < -950  # air outside the body


def test_female_anatomy_and_bone_density_tracks_request():
    base = dict(sex="F", age_years=50, height_cm=163, weight_kg=64, bfp_pct=34, mmp_pct=28)
    requested = [70, 130, 190, 250]
    measured = []
    for bd in requested:
        ph = build_phantom({**base, "bone_density_hu": bd}, seed=1, pose="standing")
        lab = ph.labels.data
        assert not (lab == FINE_LABELS["prostate"]).any()
        assert (lab == FINE_LABELS["breast_gland"]).any()
        body = np.isin(lab, [FINE_LABELS[f"vertebrae_L{i}"] for i in (1, 2, 3)])
        measured.append(float(np.median(ph.ct.data[body])))
    assert stats.spearmanr(requested, measured).statistic == pytest.approx(1.0)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"sex": "X"}, "sex must be 'F' or 'M'"),
        ({"height_cm": 90}, "height_cm=90 is outside the phantom's supported range"),
        ({"weight_kg": "heavy"}, "weight_kg must be a number"),
        ({"bfp_pct": 50, "mmp_pct": 45}, "leaves 5.0% of body mass"),
        ({"weight_kg": 200, "height_cm": 150}, "outside the phantom's supported range"),
    ],
)
def test_bad_attributes_give_specific_errors(change, message):
    attrs = dict(sex="M", age_years=40, height_cm=175, weight_kg=75, bfp_pct=22, mmp_pct=38, bone_density_hu=170)
    with pytest.raises(ValueError, match=message):
        build_phantom({**attrs, **change}, seed=0)


def test_missing_attribute_is_named():
    with pytest.raises(ValueError, match="needs attribute\\(s\\) bone_density_hu"):
        build_phantom(dict(sex="M", age_years=40, height_cm=175, weight_kg=75, bfp_pct=22, mmp_pct=38))


def test_explicit_pose_is_used():
    attrs = dict(sex="M", age_years=40, height_cm=175, weight_kg=75, bfp_pct=22, mmp_pct=38, bone_density_hu=170)
    pose = Pose(hip_flex_deg=(10.0, 5.0), foot_flex_deg=(40.0, 30.0), arms="folded")
    ph = build_phantom(attrs, seed=0, pose=pose)
    assert ph.pose == pose
    assert ph.report["extent_cm"] > 175  # pointed feet reach below the standing sole
