"""Height from pose (paper Appendix B.0.2): accuracy on held-out phantoms, fallbacks, calibration file.

Held-out: the test phantoms come from the adult reference population sampled with seed 2026 (the
rows test_phantom uses) and phantom seeds 7000+; the shipped calibration was fitted on rows sampled
with another seed and phantom seeds 500000+ (checked below from the calibration's provenance).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from vctcore.labels import FINE_LABELS
from vctcore.measure.height import HeightCalibration, HeightResult, measure_height
from vctcore.measure.height_calibration import DEFAULT_CALIBRATION_PATH, load_default_calibration
from vctcore.phantom.calibrate_height import fit_height_calibration
from vctcore.phantom import Pose, build_phantom
from vctcore.phantom.builder import REQUIRED, supported_rows
from vctcore.population import PopulationSpec

REFERENCE = "assets/populations/adult_reference.yaml"
TEST_SAMPLE_SEED = 2026
TEST_PHANTOM_SEED = 7000
TOL_CM = 2.0  # the bar: calibrated height within 2 cm
#: the fast set: standing, two random supine poses, and the supine extremes (knees 14 deg, feet 45 deg)
FAST_POSES = ("standing", "supine", "supine", Pose(hip_flex_deg=(14.0, 0.0), foot_flex_deg=(45.0, 15.0), arms="sides"))


@pytest.fixture(scope="module")
def reference_rows():
    """The first 20 rows of the adult reference population (seed 2026) inside the phantom's support."""
    return supported_rows(PopulationSpec.from_yaml(REFERENCE).sample(40, seed=TEST_SAMPLE_SEED), 20)


def _build(rows, poses) -> list[tuple[float, object, str]]:
    """(true height cm, phantom, pose label) for row i with pose poses[i] and seed TEST_PHANTOM_SEED + i."""
    out = []
    for i, ((_, row), pose) in enumerate(zip(rows.iterrows(), poses)):
        ph = build_phantom({k: row[k] for k in REQUIRED}, seed=TEST_PHANTOM_SEED + i, pose=pose)
        out.append((float(row["height_cm"]), ph, pose if isinstance(pose, str) else "supine-extreme"))
    return out


def _assert_held_out(n: int) -> None:
    prov = load_default_calibration().provenance
    assert prov["sample_seed"] != TEST_SAMPLE_SEED
    assert not set(prov["phantom_seeds"]) & set(range(TEST_PHANTOM_SEED, TEST_PHANTOM_SEED + n))


def _errors(cases) -> list[tuple[str, float, float]]:
    """(pose, raw error, calibrated error) in cm per phantom; every phantom must be measurable."""
    out = []
    for true, ph, pose in cases:
        res = measure_height(ph.labels.data, ph.labels.affine)
        assert res.reason is None and res.calibrated, (pose, res.reason)
        out.append((pose, res.raw_height_cm - true, res.height_cm - true))
    return out


@pytest.fixture(scope="module")
def fast_cases(reference_rows):
    return _build(reference_rows.head(len(FAST_POSES)), FAST_POSES)


def test_height_within_2cm_on_held_out_phantoms_in_mixed_poses(fast_cases):
    _assert_held_out(len(FAST_POSES))
    errs = _errors(fast_cases)
    for (true, ph, _), (pose, raw_err, err) in zip(fast_cases, errs):
        assert abs(err) < TOL_CM, (pose, ph.pose, true, raw_err, err)
    # the bar is not trivially met: a naive head-to-toe extent is far off for the pointed feet
    true, ph, _ = fast_cases[-1]
    assert ph.report["extent_cm"] - true > 5.0


@pytest.mark.slow
def test_height_within_2cm_on_20_held_out_phantoms(reference_rows):
    poses = ["standing" if i % 4 == 0 else "supine" for i in range(len(reference_rows))]
    _assert_held_out(len(poses))
    cases = _build(reference_rows, poses)
    supine = [ph.pose for _, ph, p in cases if p == "supine"]
    assert max(max(p.foot_flex_deg) for p in supine) > 35 and max(max(p.hip_flex_deg) for p in supine) > 8
    errs = _errors(cases)
    bad = [(pose, round(err, 2)) for pose, _, err in errs if abs(err) >= TOL_CM]
    assert not bad, bad
    assert np.mean([abs(e) for _, _, e in errs]) < 1.0


def test_raw_height_does_not_depend_on_pose():
    """Same body standing and supine with bent knees and pointed feet: segment sums agree."""
    attrs = dict(sex="M", age_years=40, height_cm=175, weight_kg=75, bfp_pct=22, mmp_pct=38, bone_density_hu=170)
    standing = build_phantom(attrs, seed=7100, pose="standing")
    supine = build_phantom(attrs, seed=7100, pose=Pose(hip_flex_deg=(14.0, 3.0), foot_flex_deg=(45.0, 30.0),
                                                       arms="folded"))
    a = measure_height(standing.labels.data, standing.labels.affine, calibration=None)
    b = measure_height(supine.labels.data, supine.labels.affine, calibration=None)
    assert supine.report["extent_cm"] - standing.report["extent_cm"] > 5.0
    assert abs(a.raw_height_cm - b.raw_height_cm) < 1.0
    for res in (a, b):
        s = res.segments_cm
        assert res.height_cm == res.raw_height_cm and not res.calibrated
        assert s["lower"] == max(s["leg_left"], s["leg_right"])
        assert res.raw_height_cm == pytest.approx(s["head"] + s["neck"] + s["torso"] + s["lower"])
        for side in ("left", "right"):
            assert s[f"leg_{side}"] == pytest.approx(s[f"femur_{side}"] + s[f"tibia_{side}"] + s[f"foot_{side}"])
        np.testing.assert_allclose(res.basis @ res.basis.T, np.eye(3), atol=1e-9)
        np.testing.assert_allclose(res.basis, np.eye(3), atol=0.05)  # the phantom's axes are RAS


@pytest.fixture(scope="module")
def phantom(fast_cases):
    return fast_cases[1][1]  # a supine phantom


def _crop_z(ph, lo: int | None = None, hi: int | None = None):
    """Labels cropped to z slices [lo, hi) and the affine moved with them."""
    lab = ph.labels.data[:, :, lo:hi]
    aff = ph.labels.affine.copy()
    aff[:3, 3] += aff[:3, 2] * (lo or 0)
    return lab, aff


def _z_range(ph, *names: str) -> tuple[int, int]:
    zs = np.flatnonzero(np.isin(ph.labels.data, [FINE_LABELS[n] for n in names]).any(axis=(0, 1)))
    return int(zs[0]), int(zs[-1])


@pytest.mark.parametrize("where, words", [
    ("above_femurs", ("legs", "no femur")),
    ("mid_thigh", ("legs", "cut off")),
    ("mid_calf", ("legs", "cut off")),
])
def test_legs_outside_the_field_of_view_give_a_reason(phantom, where, words):
    f0, f1 = _z_range(phantom, "femur_left", "femur_right")
    t0, t1 = _z_range(phantom, "tibia_left", "tibia_right")
    lo = {"above_femurs": f1 + 1, "mid_thigh": (f0 + f1) // 2, "mid_calf": (t0 + t1) // 2}[where]
    res = measure_height(*_crop_z(phantom, lo=lo))
    assert res.height_cm is None and res.raw_height_cm is None and not res.calibrated
    assert all(w in res.reason for w in words), res.reason
    assert "head" not in res.reason  # the head is still in the image and measured
    assert {"head", "neck"} <= set(res.segments_cm)


def test_unlabelled_shins_and_feet_give_a_reason(phantom):
    lab = phantom.labels.data.copy()
    lab[np.isin(lab, [FINE_LABELS[f"{b}_{s}"] for b in ("tibia", "foot_bones") for s in ("left", "right")])] = (
        FINE_LABELS["soft_tissue"])
    res = measure_height(lab, phantom.labels.affine)
    assert res.height_cm is None
    assert "legs" in res.reason and "tibia" in res.reason and "foot" in res.reason, res.reason


@pytest.mark.parametrize("where", ["crown", "mid_skull", "below_skull"])
def test_head_outside_the_field_of_view_gives_a_reason(phantom, where):
    top = int(np.flatnonzero(phantom.labels.data.any(axis=(0, 1)))[-1])
    s0, s1 = _z_range(phantom, "skull", "brain")
    hi = {"crown": top, "mid_skull": (s0 + s1) // 2, "below_skull": s0}[where]
    res = measure_height(*_crop_z(phantom, hi=hi))
    assert res.height_cm is None and "head" in res.reason, res.reason
    assert "legs" not in res.reason
    assert {"torso", "lower"} <= set(res.segments_cm)


def test_tight_field_of_view_is_still_measured(phantom):
    """One background slice above the crown and below the soles is enough: same raw height."""
    zs = np.flatnonzero(phantom.labels.data.any(axis=(0, 1)))
    ref = measure_height(phantom.labels.data, phantom.labels.affine, calibration=None)
    tight = measure_height(*_crop_z(phantom, lo=int(zs[0]) - 1, hi=int(zs[-1]) + 2), calibration=None)
    assert tight.reason is None
    assert tight.raw_height_cm == pytest.approx(ref.raw_height_cm, abs=1e-6)


def test_missing_c7_and_empty_map_give_reasons(phantom):
    lab = phantom.labels.data.copy()
    lab[lab == FINE_LABELS["vertebrae_C7"]] = FINE_LABELS["soft_tissue"]
    res = measure_height(lab, phantom.labels.affine)
    assert res.height_cm is None and "C7" in res.reason
    empty = measure_height(np.zeros((8, 8, 8), np.uint8), np.eye(4))
    assert empty.height_cm is None and "empty" in empty.reason
    with pytest.raises(ValueError, match="3-D"):
        measure_height(np.zeros((8, 8), np.uint8), np.eye(4))
    with pytest.raises(ValueError, match="integer"):
        measure_height(np.zeros((8, 8, 8), np.float32), np.eye(4))
    with pytest.raises(ValueError, match="calibration"):
        measure_height(lab, phantom.labels.affine, calibration="mine")


def _flip(lab: np.ndarray, aff: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    out = aff.copy()
    out[:3, 3] += aff[:3, axis] * (lab.shape[axis] - 1)
    out[:3, axis] = -aff[:3, axis]
    return np.flip(lab, axis=axis), out


def _permute(lab: np.ndarray, aff: np.ndarray, order: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    out = aff.copy()
    out[:3, :3] = aff[:3, list(order)]
    return np.transpose(lab, order), out


def test_raw_height_is_invariant_to_voxel_axis_order_and_world_rotation(phantom):
    lab, aff = phantom.labels.data, phantom.labels.affine
    ref = measure_height(lab, aff, calibration=None)
    c, s = np.cos(0.4), np.sin(0.4)
    rot = np.eye(4)
    rot[:3, :3] = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]) @ np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    variants = {
        "flip x": _flip(lab, aff, 0), "flip z": _flip(lab, aff, 2),
        "permute zxy": _permute(lab, aff, (2, 0, 1)),
        "permute + flip": _flip(*_permute(lab, aff, (1, 2, 0)), 1),
        "rotated world": (lab, rot @ aff),
    }
    for name, (lab2, aff2) in variants.items():
        res = measure_height(lab2, aff2, calibration=None)
        assert res.raw_height_cm == pytest.approx(ref.raw_height_cm, abs=1e-3), name
        for key, v in ref.segments_cm.items():
            assert res.segments_cm[key] == pytest.approx(v, abs=1e-3), (name, key)
    rotated = measure_height(lab, rot @ aff, calibration=None)
    np.testing.assert_allclose(rotated.basis, ref.basis @ rot[:3, :3].T, atol=1e-6)


def test_calibration_json_round_trip(tmp_path):
    cal = load_default_calibration()
    assert DEFAULT_CALIBRATION_PATH.is_file() and cal.n >= 20 and 0 < cal.rmse_cm < 1.5
    again = HeightCalibration.from_json(cal.to_json())
    assert again == cal and again.provenance == cal.provenance and again.summary == cal.summary
    path = tmp_path / "cal.json"
    cal.to_json(path)
    assert HeightCalibration.from_json(path) == cal
    assert HeightCalibration.from_json(str(path)) == cal
    # the stored raw/true pairs reproduce the shipped line
    data = cal.provenance["data"]
    assert len(data) == cal.n and {d["pose_mode"] for d in data} == {"supine", "standing"}
    refit = HeightCalibration.fit([d["raw_height_cm"] for d in data], [d["true_height_cm"] for d in data])
    assert refit.slope == pytest.approx(cal.slope, rel=1e-9)
    assert refit.intercept == pytest.approx(cal.intercept, abs=1e-7)
    assert refit.rmse_cm == pytest.approx(cal.rmse_cm, rel=1e-9)


def test_calibration_fit_and_bad_json():
    raw = np.array([150.0, 160.0, 170.0, 180.0])
    cal = HeightCalibration.fit(raw, 0.98 * raw + 2.0, poses=["supine", "supine", "standing", "supine"])
    assert cal.slope == pytest.approx(0.98) and cal.intercept == pytest.approx(2.0, abs=1e-9)
    assert cal.rmse_cm == pytest.approx(0.0, abs=1e-9) and cal.apply(200.0) == pytest.approx(198.0)
    assert cal.summary["residual_by_pose_cm"]["standing"]["n"] == 1
    with pytest.raises(ValueError):
        HeightCalibration.fit([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="not a height calibration"):
        HeightCalibration.from_json(json.dumps({"slope": 1.0}))
    with pytest.raises(ValueError, match="not valid JSON"):
        HeightCalibration.from_json("{slope: 1")


def test_explicit_calibration_is_applied(phantom):
    lab, aff = phantom.labels.data, phantom.labels.affine
    cal = HeightCalibration(slope=1.0, intercept=-10.0, n=3, rmse_cm=0.0)
    res = measure_height(lab, aff, calibration=cal)
    assert isinstance(res, HeightResult) and res.calibrated
    assert res.height_cm == pytest.approx(res.raw_height_cm - 10.0)
    default = measure_height(lab, aff)
    assert default.height_cm == pytest.approx(load_default_calibration().apply(default.raw_height_cm))
    assert json.loads(json.dumps(default.to_dict()))["height_cm"] == pytest.approx(default.height_cm)


@pytest.mark.slow
def test_shipped_calibration_is_reproducible():
    """Refitting the first phantoms of the shipped calibration gives the stored raw heights."""
    cal = load_default_calibration()
    prov = cal.provenance
    small = fit_height_calibration(4, prov["sample_seed"])
    for got, want in zip(small.provenance["data"], prov["data"][:4]):
        assert got["phantom_seed"] == want["phantom_seed"] and got["pose"] == want["pose"]
        assert got["raw_height_cm"] == pytest.approx(want["raw_height_cm"], abs=1e-6)
        assert got["true_height_cm"] == pytest.approx(want["true_height_cm"], abs=1e-9)
