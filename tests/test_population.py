"""Tests for vctcore.population and the relations of vctcore.anthropometry (real YAML/CSV files, no mocks)."""
from __future__ import annotations

import copy
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from vctcore import anthropometry as anth
from vctcore import population_checks as C
from vctcore.attributes import ATTRIBUTE_NAMES, MAX_BFP_PLUS_MMP, bmi, check_table
from vctcore.population import BiasSplit, PopulationSpec, SpecError, apply_split, support_report

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "populations"
SHIPPED = sorted(ASSETS.glob("*.yaml"))


@pytest.fixture(scope="module")
def reference() -> PopulationSpec:
    return PopulationSpec.from_yaml(ASSETS / "adult_reference.yaml")


@pytest.fixture(scope="module")
def reference_2000(reference) -> pd.DataFrame:
    return reference.sample(2000, seed=7)


def _base() -> dict:
    return {"name": "t", "attributes": copy.deepcopy(C.DEFAULT_ATTRIBUTES)}


def _with(path: str, value) -> dict:
    """The base spec dict with ``value`` set at a dotted ``path`` (e.g. "attributes.age_years.low")."""
    d = _base()
    *parents, last = path.split(".")
    node = d
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return d


# ---- shipped specs ---------------------------------------------------------------------------
def test_shipped_specs_exist():
    assert {p.name for p in SHIPPED} >= {"adult_reference.yaml", "paper_id.yaml", "paper_ood.yaml"}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_spec_samples_valid_table(path):
    spec = PopulationSpec.from_yaml(path)
    df = spec.sample(500, seed=0)
    assert list(df.columns) == ["id", *ATTRIBUTE_NAMES]
    assert len(df) == 500 and df["id"].iloc[0] == "P0000" and df["id"].is_unique
    check_table(df)
    assert (df["bfp_pct"] + df["mmp_pct"] <= MAX_BFP_PLUS_MMP).all()
    b = bmi(df["height_cm"], df["weight_kg"])
    assert b.min() >= 16 and b.max() <= 45
    if spec.split is not None:
        assert apply_split(df, spec.split).all()


def test_paper_id_split_gives_strong_volume_fat_correlation():
    id_df = PopulationSpec.from_yaml(ASSETS / "paper_id.yaml").sample(2000, seed=0)
    ood_df = PopulationSpec.from_yaml(ASSETS / "paper_ood.yaml").sample(2000, seed=0)
    r_id = np.corrcoef(id_df["body_volume_l"], id_df["bfp_pct"])[0, 1]
    r_ood = np.corrcoef(ood_df["body_volume_l"], ood_df["bfp_pct"])[0, 1]
    assert r_id > 0.8 and r_id > r_ood
    # same body volume, different linear relation: OOD patients carry more fat at equal volume
    slope, icept = np.polyfit(id_df["body_volume_l"], id_df["bfp_pct"], 1)
    assert (ood_df["bfp_pct"] - (slope * ood_df["body_volume_l"] + icept)).mean() > 5


# ---- reproducibility and round trips ---------------------------------------------------------
def test_same_seed_same_frame_different_seed_differs(reference):
    a, b, c = reference.sample(300, seed=3), reference.sample(300, seed=3), reference.sample(300, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["height_cm"], c["height_cm"])
    assert a.attrs["seed"] == 3 and a.attrs["population"]["name"] == "adult_reference"


def test_dict_and_yaml_round_trip(reference, tmp_path):
    assert PopulationSpec.from_dict(reference.to_dict()) == reference
    assert PopulationSpec.from_yaml(reference.to_yaml()) == reference
    spec = PopulationSpec.from_yaml(ASSETS / "paper_id.yaml")
    out = tmp_path / "copy.yaml"
    spec.to_yaml(out)
    again = PopulationSpec.from_yaml(out)
    assert again == spec
    assert again.split == BiasSplit("body_volume_l", "mmp_pct", (0.25, 1.0), intercept=-57, keep="above")
    pd.testing.assert_frame_equal(again.sample(100, seed=1), spec.sample(100, seed=1))


def test_numpy_values_from_a_form_serialise_to_yaml():
    d = _with("attributes.age_years", {"dist": "uniform", "low": np.float64(30), "high": np.int64(60)})
    d["constraints"] = {"bmi": (np.float32(18.5), None)}
    spec = PopulationSpec.from_dict(d)
    assert PopulationSpec.from_yaml(spec.to_yaml()) == spec
    assert spec.to_dict()["constraints"] == {"bmi": [18.5, None]}


def test_allowed_dists_per_attribute():
    assert C.allowed_dists("sex") == ("fixed", "categorical", "empirical")
    assert "bmi" in C.allowed_dists("weight_kg") and "relation" not in C.allowed_dists("weight_kg")
    assert "relation" in C.allowed_dists("bone_density_hu") and C.allowed_dists("body_volume_l") == ()


def test_missing_attributes_get_defaults():
    spec = PopulationSpec.from_dict({"name": "only_age", "attributes": {"age_years": {"dist": "fixed", "value": 70}}})
    assert set(spec.attributes) == set(C.SAMPLING_ORDER)
    df = spec.sample(200, seed=0)
    assert (df["age_years"] == 70).all() and set(df["sex"]) == {"F", "M"}


# ---- distributions ---------------------------------------------------------------------------
def test_distribution_kinds_respect_bounds():
    d = _base()
    d["attributes"].update({
        "sex": {"dist": "fixed", "value": "M"},
        "age_years": {"dist": "normal", "mean": 50, "sd": 30},
        "height_cm": {"dist": "uniform", "low": 170, "high": 180},
        "weight_kg": {"dist": "lognormal", "mean": 80, "sd": 15, "low": 60, "high": 110},
        "bone_density_hu": {"dist": "truncnormal", "mean": 150, "sd": 40, "low": 100, "high": 200},
    })
    df = PopulationSpec.from_dict(d).sample(1000, seed=0)
    assert (df["sex"] == "M").all()
    assert df["age_years"].between(18, 100).all() and df["age_years"].std() > 15
    assert df["height_cm"].between(170, 180).all()
    assert df["weight_kg"].between(60, 110).all() and abs(df["weight_kg"].median() - 78) < 4
    assert df["bone_density_hu"].between(100, 200).all()


def test_per_sex_parameters_and_bmi_weight(reference_2000):
    by_sex = reference_2000.groupby("sex")["height_cm"].mean()
    assert by_sex["M"] - by_sex["F"] > 10
    d = _with("attributes.weight_kg", {"dist": "bmi", "mean": 32, "sd": 1, "low": 30, "high": 35})
    df = PopulationSpec.from_dict(d).sample(500, seed=2)
    b = bmi(df["height_cm"], df["weight_kg"])
    assert b.min() >= 30 - 1e-9 and b.max() <= 35 + 1e-9


def test_constraint_honoured():
    d = _base()
    d["constraints"] = {"bmi": [30, 35], "age_years": [40, None], "bfp_plus_mmp_max": 70}
    df = PopulationSpec.from_dict(d).sample(800, seed=1)
    b = bmi(df["height_cm"], df["weight_kg"])
    assert b.min() >= 30 and b.max() <= 35 and df["age_years"].min() >= 40
    assert (df["bfp_pct"] + df["mmp_pct"]).max() <= 70


def test_impossible_constraint_fails_fast_with_clear_message():
    d = _with("constraints.bmi", [40, 45])
    d["attributes"]["weight_kg"] = {"dist": "bmi", "mean": 22, "sd": 2, "low": 18, "high": 30}
    spec = PopulationSpec.from_dict(d)
    start = time.perf_counter()
    with pytest.raises(SpecError, match=r"only 0 of 10000 draws satisfied the constraints \(500 needed\); "
                                         r"pass counts per constraint: bmi in \[40, 45\]: 0/10000") as info:
        spec.sample(500, seed=0)
    assert time.perf_counter() - start < 2.0
    assert "'t'" in str(info.value)


# ---- relations -------------------------------------------------------------------------------
def test_relation_functions_follow_sources():
    assert anth.mean_bfp_pct("M", 40, 25) == pytest.approx(1.2 * 25 + 0.23 * 40 - 10.8 - 5.4)
    assert anth.mean_bfp_pct(["F"], [40], [25])[0] - anth.mean_bfp_pct(["M"], [40], [25])[0] == pytest.approx(10.8)
    assert anth.siri_body_density_g_cm3(30) == pytest.approx(495 / 480)
    assert anth.mean_body_volume_l(96, 30) == pytest.approx(96 * 480 / 495)
    young, old = anth.mean_bone_density_hu(["F", "M"], [25, 25]), anth.mean_bone_density_hu(["F", "M"], [80, 80])
    assert (200 <= young).all() and (young <= 235).all() and (np.abs(old - 100) <= 15).all() and young[0] > young[1]
    assert anth.mean_mmp_pct("M", 40, 25) > anth.mean_mmp_pct("F", 40, 25)
    assert anth.mean_mmp_pct("M", 40, 35) < anth.mean_mmp_pct("M", 40, 25)
    assert anth.mean_mmp_pct("M", 75, 25) < anth.mean_mmp_pct("M", 45, 25)
    with pytest.raises(ValueError, match="sex: unknown value"):
        anth.mean_bfp_pct("X", 40, 25)


def test_sampled_relations_move_the_right_way(reference_2000):
    df = reference_2000
    b = bmi(df["height_cm"], df["weight_kg"])
    male = (df["sex"] == "M").to_numpy(float)
    X = np.column_stack([np.ones(len(df)), b, df["age_years"], male])
    coef, *_ = np.linalg.lstsq(X, df["bfp_pct"], rcond=None)
    assert coef[1] > 0.8 and coef[2] > 0.1 and coef[3] < -7  # rises with BMI and age, lower in men
    assert spearmanr(df["age_years"], df["bone_density_hu"])[0] < -0.6
    means = df.groupby("sex")["mmp_pct"].mean()
    assert means["M"] - means["F"] > 4
    assert np.corrcoef(df["bfp_pct"], df["mmp_pct"])[0, 1] < -0.5


def test_relation_sd_and_shift_override():
    d = _with("attributes.bfp_pct", {"dist": "relation", "sd": 0.5, "shift": 5})
    d["attributes"].update({"sex": {"dist": "fixed", "value": "F"}, "age_years": {"dist": "fixed", "value": 40},
                            "height_cm": {"dist": "fixed", "value": 165},
                            "weight_kg": {"dist": "fixed", "value": 65}})
    df = PopulationSpec.from_dict(d).sample(400, seed=0)
    expected = anth.mean_bfp_pct("F", 40, bmi(165, 65)) + 5
    assert abs(df["bfp_pct"].mean() - expected) < 0.1 and df["bfp_pct"].std() < 0.6


# ---- bias split ------------------------------------------------------------------------------
def test_split_keeps_correct_side(reference_2000):
    split = BiasSplit("body_volume_l", "mmp_pct", (0.25, 1.0), intercept=-57, keep="above")
    score = 0.25 * reference_2000["body_volume_l"] + reference_2000["mmp_pct"] - 57
    np.testing.assert_array_equal(split.inside(reference_2000), score > 0)
    np.testing.assert_array_equal(apply_split(reference_2000, split.flipped().to_dict()), score < 0)
    d = _with("split", {"x": "bmi", "y": "age_years", "coef": [1, 0], "intercept": -30, "keep": "below"})
    df = PopulationSpec.from_dict(d).sample(300, seed=0)
    assert bmi(df["height_cm"], df["weight_kg"]).max() < 30


def test_split_on_table_without_column():
    with pytest.raises(SpecError, match=re.escape("split: the table has no column 'mmp_pct'")):
        apply_split(pd.DataFrame({"body_volume_l": [70.0]}), {"x": "body_volume_l", "y": "mmp_pct", "coef": [1, 1]})


# ---- empirical -------------------------------------------------------------------------------
@pytest.fixture()
def cohort_csv(tmp_path) -> Path:
    path = tmp_path / "cohort.csv"
    pd.DataFrame({"sex": ["F", "M", "F", "M", "F"], "height_cm": [158.0, 181.0, 166.5, 172.0, 149.0],
                  "weight_kg": [55.0, 92.0, 71.0, 68.0, 50.0], "note": list("abcde")}).to_csv(path, index=False)
    return path


def test_empirical_resamples_rows_jointly(cohort_csv, tmp_path):
    yaml_path = tmp_path / "emp.yaml"
    yaml_path.write_text("name: emp\nattributes:\n  height_cm: {dist: empirical, path: cohort.csv, "
                         "columns: [sex, height_cm, weight_kg]}\n")
    df = PopulationSpec.from_yaml(yaml_path).sample(300, seed=0)  # relative path: next to the YAML
    rows = set(map(tuple, pd.read_csv(cohort_csv)[["sex", "height_cm", "weight_kg"]].to_numpy().tolist()))
    drawn = set(map(tuple, df[["sex", "height_cm", "weight_kg"]].to_numpy().tolist()))
    assert drawn <= rows and len(drawn) >= 4
    jittered = PopulationSpec.from_dict({"name": "j", "attributes": {"height_cm": {
        "dist": "empirical", "path": str(cohort_csv), "jitter": {"height_cm": 1.0}}}}).sample(300, seed=0)
    assert not set(jittered["height_cm"]) <= {158.0, 181.0, 166.5, 172.0, 149.0}


def test_empirical_errors(cohort_csv, tmp_path):
    cfg = {"dist": "empirical", "path": str(cohort_csv), "columns": ["height_cm", "age_years"]}
    expected = C.EMPIRICAL_MISSING_COLUMNS.format(name="height_cm", path=cohort_csv, missing=["age_years"],
                                                  have=["sex", "height_cm", "weight_kg", "note"])
    with pytest.raises(SpecError, match=re.escape(expected)):
        PopulationSpec.from_dict(_with("attributes.height_cm", cfg))
    missing = tmp_path / "nope.csv"
    with pytest.raises(SpecError, match=re.escape(C.EMPIRICAL_NO_FILE.format(name="height_cm", path=missing))):
        PopulationSpec.from_dict(_with("attributes.height_cm", {"dist": "empirical", "path": str(missing)}))
    d = _with("attributes.height_cm", {"dist": "empirical", "path": str(cohort_csv), "columns": ["height_cm", "sex"]})
    with pytest.raises(SpecError, match=re.escape(C.DUPLICATE_ATTRIBUTE.format(name="sex", other="height_cm"))):
        PopulationSpec.from_dict(d)


# ---- spec errors -----------------------------------------------------------------------------
ERROR_CASES = [
    ("unknown_attribute", "attributes.shoe_size", {"dist": "fixed", "value": 42},
     "attributes.shoe_size: unknown attribute; known: sex, age_years"),
    ("derived", "attributes.body_volume_l", {"dist": "fixed", "value": 70},
     C.DERIVED_ATTRIBUTE.format(name="body_volume_l")),
    ("unknown_dist", "attributes.age_years", {"dist": "gamma"},
     C.UNKNOWN_DIST.format(name="age_years", dist="gamma", allowed=", ".join(C.DISTS))),
    ("dist_not_allowed", "attributes.height_cm", {"dist": "relation"},
     "attributes.height_cm.dist: 'relation' is not available for 'height_cm'; allowed here: fixed, uniform"),
    ("missing_param", "attributes.age_years", {"dist": "uniform", "low": 20},
     C.MISSING_PARAM.format(name="age_years", dist="uniform", param="high")),
    ("unknown_param", "attributes.age_years", {"dist": "uniform", "low": 20, "high": 30, "mode": 25},
     C.UNKNOWN_PARAM.format(name="age_years", param="mode", dist="uniform", allowed="high, low")),
    ("low_above_high", "attributes.age_years", {"dist": "uniform", "low": 60, "high": 30},
     C.LOW_ABOVE_HIGH.format(field="attributes.age_years", low=60, high=30)),
    ("sd_zero", "attributes.height_cm", {"dist": "normal", "mean": 170, "sd": 0},
     C.NONPOSITIVE_SD.format(field="attributes.height_cm.sd", value=0)),
    ("per_sex_sd_negative", "attributes.height_cm", {"dist": "normal", "mean": 170, "sd": {"F": 7, "M": -1}},
     C.NONPOSITIVE_SD.format(field="attributes.height_cm.sd[M]", value=-1)),
    ("per_sex_keys", "attributes.height_cm", {"dist": "normal", "mean": {"F": 160}, "sd": 7},
     C.PER_SEX_KEYS.format(field="attributes.height_cm.mean", keys=["F"])),
    ("not_a_number", "attributes.age_years", {"dist": "fixed", "value": "old"},
     C.NOT_A_NUMBER.format(field="attributes.age_years.value", value="old")),
    ("probabilities_sum", "attributes.sex", {"dist": "categorical", "p": {"F": 0.7, "M": 0.7}},
     C.BAD_PROBABILITIES.format(name="sex", p={"F": 0.7, "M": 0.7})),
    ("probabilities_negative", "attributes.sex", {"dist": "categorical", "p": {"F": 1.5, "M": -0.5}},
     C.BAD_PROBABILITIES.format(name="sex", p={"F": 1.5, "M": -0.5})),
    ("unknown_category", "attributes.sex", {"dist": "categorical", "p": {"F": 0.5, "X": 0.5}},
     C.UNKNOWN_CATEGORY.format(name="sex", cat="X", allowed=["F", "M"])),
    ("bad_sex_value", "attributes.sex", {"dist": "fixed", "value": "X"},
     C.BAD_SEX_VALUE.format(value="X", allowed=["F", "M"])),
    ("outside_physio", "attributes.height_cm", {"dist": "uniform", "low": 100, "high": 180},
     C.OUT_OF_PHYSIO.format(field="attributes.height_cm.low", value=100, what="height_cm", low=130, high=215,
                            unit=" cm")),
    ("bmi_outside_physio", "attributes.weight_kg", {"dist": "bmi", "mean": 25, "sd": 3, "high": 95},
     C.OUT_OF_PHYSIO.format(field="attributes.weight_kg.high", value=95, what="bmi", low=10, high=80,
                            unit=" kg/m2")),
    ("bad_shape", "attributes.weight_kg", {"dist": "bmi", "mean": 25, "sd": 3, "shape": "gamma"},
     C.BAD_SHAPE.format(name="weight_kg", value="gamma")),
    ("constraint_outside_physio", "constraints.age_years", [10, 40],
     C.OUT_OF_PHYSIO.format(field="constraints.age_years", value=10, what="age_years", low=18, high=100,
                            unit=" years")),
    ("constraint_low_above_high", "constraints.bmi", [35, 20],
     C.LOW_ABOVE_HIGH.format(field="constraints.bmi", low=35, high=20)),
    ("constraint_unknown", "constraints.shoe_size", [1, 2], C.UNKNOWN_CONSTRAINT.format(key="shoe_size")),
    ("constraint_not_a_range", "constraints.bmi", 30, C.BAD_RANGE.format(key="bmi", value=30)),
    ("sum_max_too_high", "constraints.bfp_plus_mmp_max", 95, C.BAD_SUM_MAX.format(high=85, value=95)),
    ("split_unknown_column", "split", {"x": "volume", "y": "mmp_pct", "coef": [1, 1]},
     "split.x: unknown column 'volume'; allowed: age_years, height_cm"),
    ("split_bad_keep", "split", {"x": "body_volume_l", "y": "mmp_pct", "coef": [1, 1], "keep": "left"},
     C.BAD_KEEP.format(value="left")),
    ("split_bad_coef", "split", {"x": "body_volume_l", "y": "mmp_pct", "coef": [0, 0]},
     C.BAD_COEF.format(value=[0, 0])),
    ("split_unknown_key", "split", {"x": "body_volume_l", "y": "mmp_pct", "coef": [1, 1], "side": "up"},
     C.UNKNOWN_SPLIT_KEY.format(key="side")),
    ("unknown_top_key", "populaton", "x", C.UNKNOWN_TOP_KEY.format(key="populaton", allowed=", ".join(C._TOP_KEYS))),
    ("missing_name", "name", "", C.MISSING_NAME.format(value="")),
]


@pytest.mark.parametrize(("path", "value", "message"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_spec_errors(path, value, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        PopulationSpec.from_dict(_with(path, value))


def test_yaml_and_sample_argument_errors(tmp_path, reference):
    with pytest.raises(SpecError, match=re.escape(C.MISSING_FILE.format(path=tmp_path / "none.yaml"))):
        PopulationSpec.from_yaml(tmp_path / "none.yaml")
    with pytest.raises(SpecError, match=re.escape(C.BAD_YAML.format(kind="list"))):
        PopulationSpec.from_yaml("- a\n- b\n")
    with pytest.raises(SpecError, match="population spec is not valid YAML"):
        PopulationSpec.from_yaml("name: [unclosed\n")
    with pytest.raises(SpecError, match=re.escape(C.BAD_N.format(value=0))):
        reference.sample(0, seed=0)
    assert isinstance(SpecError("x"), ValueError)


# ---- support ---------------------------------------------------------------------------------
def test_support_report(reference, reference_2000):
    own = support_report(reference_2000, reference_2000)
    assert list(own.columns) == ["attribute", "low", "high", "inside_fraction"]
    assert (own["inside_fraction"] == 1.0).all() and set(own["attribute"]) == set(ATTRIBUTE_NAMES)
    old = PopulationSpec.from_dict(_with("attributes.age_years", {"dist": "uniform", "low": 70, "high": 95}))
    report = support_report(old.sample(500, seed=0), reference, n_reference=1000).set_index("attribute")
    assert 0.4 < report.loc["age_years", "inside_fraction"] < 0.8
