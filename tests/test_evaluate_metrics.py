"""Each fidelity metric on inputs whose answer is known."""
from __future__ import annotations

import math

import numpy as np
import pytest

from vctcore.attributes import bin_index, bin_labels
from vctcore.fidelity.anatomy import AXES, ORGANS, anatomy_correlations, body_origin_mm, organ_stats, pearson
from vctcore.fidelity.conditioning import bin_z_scores, conditioning_checks, fit_line, mae
from vctcore.fidelity.metrics import composition_mae, judged, pass_flags
from vctcore.fidelity.realism import frechet_distance, plane_distances, slice_positions
from vctcore.fidelity.recon import psnr_hu, ssim_hu
from vctcore.overlap import cohort_dice, dice_per_class, mean_dice
from vctcore.volume import CTVolume, LabelMap, make_affine

# ---------------------------------------------------------------- Dice


def _box(shape=(40, 30, 20), lo=(5, 5, 5), size=(20, 10, 8), value=1, shift=(0, 0, 0)) -> np.ndarray:
    a = np.zeros(shape, np.uint8)
    s = tuple(slice(l + d, l + d + n) for l, n, d in zip(lo, size, shift))
    a[s] = value
    return a


def test_dice_of_identical_maps_is_one():
    a = _box() + _box(lo=(28, 18, 12), size=(6, 6, 6), value=4)
    d = dice_per_class(a, a.copy())
    assert d["bone"] == 1.0 and d["liver"] == 1.0
    assert mean_dice(d) == 1.0


@pytest.mark.parametrize("k", [1, 3, 7])
def test_dice_of_a_box_shifted_by_k_voxels(k):
    # a box of length L along x shifted by k overlaps (L - k) / L of itself: Dice = (L - k) / L
    a = _box(size=(20, 10, 8))
    b = _box(size=(20, 10, 8), shift=(k, 0, 0))
    assert dice_per_class(a, b, [1])["bone"] == pytest.approx((20 - k) / 20)
    # a shift along two axes multiplies the overlaps: 2|A&B|/(|A|+|B|) = (20-k)(10-k)/(20*10)
    c = _box(size=(20, 10, 8), shift=(k, k, 0))
    assert dice_per_class(a, c, [1])["bone"] == pytest.approx((20 - k) * (10 - k) / 200)


def test_missing_classes_zero_or_left_out():
    a = _box(value=2)  # spleen only
    b = _box(value=2) + _box(lo=(30, 20, 15), size=(4, 4, 4), value=9)  # spleen + prostate
    d = dice_per_class(a, b)
    assert d["spleen"] == 1.0
    assert d["prostate"] == 0.0  # in one map only
    assert math.isnan(d["liver"])  # in neither: no Dice
    assert mean_dice(d) == pytest.approx(0.5)  # (1 + 0) / 2, absent classes left out
    cohort = cohort_dice([d, dice_per_class(a, a)])
    assert cohort["per_class"]["spleen"] == 1.0
    assert cohort["n_per_class"]["prostate"] == 1 and cohort["per_class"]["prostate"] == 0.0
    assert math.isnan(cohort["per_class"]["liver"])
    with pytest.raises(ValueError, match="shape"):
        dice_per_class(a, a[:-1])


# ---------------------------------------------------------------- anatomy


def _organ_record(volumes: dict[str, float], centroids: dict[str, list[float]]) -> dict:
    return {name: {"volume_ml": volumes.get(name, 0.0), "centroid_mm": centroids.get(name)} for name in ORGANS.values()}


def test_volume_and_centroid_correlation_on_constructed_pairs():
    rng = np.random.default_rng(0)
    real, syn_same, syn_lin, syn_rand = [], [], [], []
    for _ in range(12):
        v, c = rng.uniform(500, 2000), rng.normal(0, 50, 3).tolist()
        real.append(_organ_record({"liver": v}, {"liver": c}))
        syn_same.append(_organ_record({"liver": v}, {"liver": c}))
        syn_lin.append(_organ_record({"liver": 2 * v + 10}, {"liver": [3 * x - 5 for x in c]}))
        syn_rand.append(_organ_record({"liver": rng.uniform(500, 2000)}, {"liver": rng.normal(0, 50, 3).tolist()}))
    same = anatomy_correlations(syn_same, real)
    assert same["volume"]["per_class"]["liver"] == pytest.approx(1.0)
    assert all(same["centroid"]["per_class"]["liver"][ax] == pytest.approx(1.0) for ax in AXES)
    assert math.isnan(same["volume"]["per_class"]["spleen"])  # absent everywhere: constant 0, no r
    assert same["volume"]["mean"] == pytest.approx(1.0) and same["centroid"]["mean"] == pytest.approx(1.0)
    assert anatomy_correlations(syn_lin, real)["volume"]["mean"] == pytest.approx(1.0)  # Pearson: linear maps
    missing = [_organ_record({}, {}) for _ in real]  # the generator never makes a liver
    never = anatomy_correlations(missing, real)
    assert never["volume"]["per_class"]["liver"] == 0.0
    assert never["centroid"]["per_class"]["liver"] == {"R": 0.0, "A": 0.0, "S": 0.0}
    rand = anatomy_correlations(syn_rand, real)
    assert abs(rand["volume"]["mean"]) < 0.8 and rand["centroid"]["mean"] < 0.8
    with pytest.raises(ValueError, match="matched pairs"):
        anatomy_correlations(syn_same[:-1], real)


def test_pearson_needs_three_pairs_and_variation():
    assert math.isnan(pearson([1, 2], [1, 2]))
    assert math.isnan(pearson([1, 1, 1], [2, 2, 2]))
    assert pearson([1, 1, 1], [1, 2, 3]) == 0.0  # nothing of the real variation is reproduced
    assert pearson([1, 2, 3, np.nan], [2, 4, 6, 1]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_organ_stats_volumes_and_centroids_in_patient_frame():
    affine = make_affine((2.0, 3.0, 4.0), (100.0, -50.0, 10.0))
    hu = np.full((20, 20, 20), -1000.0, np.float32)
    hu[2:18, 2:18, 2:18] = 40.0  # body: centre voxel 9.5 -> world (119, -21.5, 48)
    seg = np.zeros((20, 20, 20), np.uint8)
    seg[4:8, 6:10, 10:12] = 4  # liver: 4*4*2 voxels, centre (5.5, 7.5, 10.5)
    ct = CTVolume(hu, affine)
    origin = body_origin_mm(ct)
    assert origin == pytest.approx([119.0, -21.5, 48.0])
    stats = organ_stats(LabelMap(seg, affine, {4: "liver"}), origin)
    assert stats["liver"]["volume_ml"] == pytest.approx(32 * 24 / 1000)
    assert stats["liver"]["centroid_mm"] == pytest.approx([(5.5 - 9.5) * 2, (7.5 - 9.5) * 3, (10.5 - 9.5) * 4])
    assert stats["spleen"] == {"volume_ml": 0.0, "centroid_mm": None}


# ---------------------------------------------------------------- conditioning


def test_z_scores_on_known_distributions():
    rng = np.random.default_rng(1)
    real = np.concatenate([rng.normal(100, 10, 2000), rng.normal(200, 20, 2000)])
    bins = np.repeat([1, 2], 2000)
    same = bin_z_scores(np.concatenate([rng.normal(100, 10, 2000), rng.normal(200, 20, 2000)]), real, bins, bins)
    assert same["mean_abs_z"] < 0.1
    shifted = np.concatenate([rng.normal(105, 10, 2000), rng.normal(190, 20, 2000)])  # +0.5 SD and -0.5 SD
    res = bin_z_scores(shifted, real, bins, bins)
    assert res["mean_abs_z"] == pytest.approx(0.5, abs=0.06)
    assert res["bins"][0]["z"] == pytest.approx(0.5, abs=0.08) and res["bins"][1]["z"] == pytest.approx(-0.5, abs=0.08)


def test_z_score_exact_value_and_bins_that_do_not_count():
    real, syn = [1.0, 3.0, 10.0], [4.0, 2.0, 11.0]
    res = bin_z_scores(syn, real, [1, 1, 2], [1, 1, 2], labels=["none", "a", "b"])
    # bin a: real mean 2, sd sqrt(2); synthetic mean 3 -> Z = 1/sqrt(2); bin b has one real value: left out
    assert res["bins"][0]["bin"] == "a" and res["bins"][0]["z"] == pytest.approx(1 / math.sqrt(2))
    assert math.isnan(res["bins"][1]["z"]) and res["n_bins"] == 1
    assert res["mean_abs_z"] == pytest.approx(1 / math.sqrt(2))


def test_conditioning_checks_bin_by_the_requested_attribute():
    ages = [25, 27, 29, 55, 57, 59]
    requested = {"age_years": ages, "weight_kg": [60, 62, 64, 90, 92, 94], "height_cm": [160, 161, 162, 180, 181, 182]}
    real = {"bone_density_hu": [200, 210, 220, 120, 130, 140], "weight_kg": [60, 62, 64, 90, 92, 94],
            "height_cm": [160, 161, 162, 180, 181, 182]}
    res = conditioning_checks(requested, real, real, real)
    assert res["bone_density_by_age"]["mean_abs_z"] == 0.0 and res["bone_density_by_age"]["recon_mean_abs_z"] == 0.0
    assert res["bone_density_by_age"]["bin_of_patient"][0] == bin_labels("age_years")[bin_index("age_years", 25)[0]]
    assert set(res["weight_by_weight"]["values"]) == {"real", "synthetic", "reconstructed"}


def test_height_fit_and_mae():
    slope, intercept = fit_line([170, 180, 190], [160, 170, 180])
    assert (slope, intercept) == pytest.approx((1.0, -10.0))
    assert fit_line([170], [160]) == (1.0, 0.0)
    assert mae([1, 2, np.nan], [2, 4, 5]) == pytest.approx(1.5)
    assert math.isnan(mae([np.nan], [1]))


def test_composition_mae_is_calibrated_on_the_real_images():
    """A measurement 8 points high on every real image: a synthetic image measured like its real match
    scores 0 after calibration (8 before); one that measures the recorded value (so differs from its
    real match by 8) scores 8 (0 before)."""
    recorded = [30.0, 35.0, 40.0, 45.0]
    real = [{"requested": {"mmp_pct": v}, "measures": {"mmp_pct": v + 8}} for v in recorded]
    like_real = [{"requested": {"mmp_pct": v}, "measures": {"mmp_pct": v + 8}} for v in recorded]
    like_recorded = [{"requested": {"mmp_pct": v}, "measures": {"mmp_pct": v}} for v in recorded]
    a, b = composition_mae("mmp_pct", real, like_real), composition_mae("mmp_pct", real, like_recorded)
    assert a["value"] == pytest.approx(0.0, abs=1e-9) and a["uncalibrated_value"] == pytest.approx(8.0)
    assert b["value"] == pytest.approx(8.0) and b["uncalibrated_value"] == pytest.approx(0.0, abs=1e-9)
    assert a["real_floor"] == pytest.approx(0.0, abs=1e-9) and a["uncalibrated_real_floor"] == pytest.approx(8.0)
    assert a["calibration"] == pytest.approx({"slope": 1.0, "intercept": -8.0}) and a["pass"] and not b["pass"]


def test_paired_ceiling_is_the_share_the_attributes_explain():
    """Liver volume = 20 mL per cm of height + noise of the same spread: R^2 about 0.5; spleen volume by
    sex alone: about 1; kidney volume pure noise: about 0; an organ nobody has: NaN, left out."""
    from vctcore.fidelity.ceiling import attribute_matrix, explained_share, paired_ceilings

    rng = np.random.default_rng(0)
    n = 400
    height = rng.normal(170, 10, n)
    sex = rng.choice(["F", "M"], n)
    requested = [{"sex": s, "height_cm": h, "age_years": 50.0} for s, h in zip(sex, height)]
    organs = []
    for s, h in zip(sex, height):
        rec = {name: {"volume_ml": 0.0, "centroid_mm": None} for name in ORGANS.values()}
        rec["liver"] = {"volume_ml": 20 * h + rng.normal(0, 200), "centroid_mm": [h, rng.normal(), 0.0]}
        rec["spleen"] = {"volume_ml": 300.0 if s == "M" else 200.0, "centroid_mm": [0.0, 0.0, h]}
        rec["kidney"] = {"volume_ml": rng.normal(150, 20), "centroid_mm": [0.0, 0.0, 0.0]}
        organs.append(rec)
    x = attribute_matrix(requested, ["sex", "age_years", "height_cm"])
    assert x.shape == (n, 3) and np.allclose(x[:, 1], 0.0)  # a constant attribute is a zero column
    assert explained_share([o["liver"]["volume_ml"] for o in organs], x) == pytest.approx(0.5, abs=0.08)
    assert explained_share([o["spleen"]["volume_ml"] for o in organs], x) == pytest.approx(1.0, abs=1e-3)
    assert explained_share([o["kidney"]["volume_ml"] for o in organs], x) < 0.05
    assert math.isnan(explained_share([1.0] * 10, x[:10]))  # too few patients
    res = paired_ceilings(organs, requested, ["sex", "age_years", "height_cm"])
    assert res["volume_per_class"]["liver"] == pytest.approx(0.5, abs=0.08)
    assert res["centroid_per_axis"]["S"] == pytest.approx(1.0, abs=1e-3)  # the spleen alone: others are constant
    assert res["centroid_per_axis"]["A"] < 0.05
    assert math.isnan(res["volume_per_class"]["brain"]) and math.isfinite(res["volume"])


def test_targets_pass_and_fail():
    assert judged("joint_seg_dice", 0.85)["pass"] and not judged("joint_seg_dice", 0.7)["pass"]
    assert judged("weight_z", 0.4)["pass"] and not judged("weight_z", 0.6)["pass"]
    assert not judged("bfp_mae", float("nan"))["pass"]  # a figure that could not be computed fails
    assert pass_flags({"a": {"pass": True}, "b": {"pass": None}, "c": {"pass": False}}) == {"a": True, "c": False}


# ---------------------------------------------------------------- reconstruction quality


def test_psnr_and_ssim_on_known_noise():
    rng = np.random.default_rng(2)
    ref = rng.uniform(-900, 900, (32, 32, 32)).astype(np.float32)
    for sigma in (10.0, 40.0):
        test = ref + rng.normal(0, sigma, ref.shape).astype(np.float32)
        # PSNR = 10 log10(range^2 / MSE) with range 2000 HU and MSE = sigma^2
        assert psnr_hu(ref, test) == pytest.approx(10 * math.log10(2000**2 / sigma**2), abs=0.1)
    assert ssim_hu(ref, ref) == pytest.approx(1.0)
    smooth = np.cumsum(rng.normal(0, 20, (32, 32, 32)), axis=0).astype(np.float32)
    s_lo = ssim_hu(smooth, smooth + rng.normal(0, 10, smooth.shape).astype(np.float32))
    s_hi = ssim_hu(smooth, smooth + rng.normal(0, 80, smooth.shape).astype(np.float32))
    assert 1.0 > s_lo > s_hi > 0.0
    clipped = np.clip(ref, -1000, 1000) + 0  # values outside [-1000, 1000] HU do not count
    assert psnr_hu(ref, np.where(ref > 800, 3000, ref)) > psnr_hu(ref, np.where(ref > 800, 0, ref))
    assert psnr_hu(clipped, clipped) == float("inf")


# ---------------------------------------------------------------- realism


def test_frechet_distance_zero_for_identical_sets_and_grows_with_a_shift():
    rng = np.random.default_rng(3)
    a = rng.normal(0, 1, (500, 8))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    d = [frechet_distance(a, a + s) for s in (0.5, 1.0, 2.0)]
    # a pure mean shift of s in every one of 8 dimensions adds |m1 - m2|^2 = 8 s^2
    assert d == pytest.approx([8 * 0.25, 8 * 1.0, 8 * 4.0], rel=1e-6)
    scaled = frechet_distance(a, a * 2.0)  # covariance 4I vs I: trace term 8 * (1 + 4 - 2*2) = 8
    assert scaled == pytest.approx(8.0, rel=0.15)
    assert math.isnan(frechet_distance(a[:1], a))
    feats = [{"axial": a[:100], "coronal": a[100:200], "sagittal": a[200:300]}]
    same = plane_distances(feats, feats)
    assert same["mean"] == pytest.approx(0.0, abs=1e-6)


def test_slice_positions_spread_over_the_body():
    body = np.zeros((10, 10, 100), bool)
    body[:, :, 20:60] = True
    pos = slice_positions(body, 2, 4)
    assert pos == [25, 35, 45, 55]
