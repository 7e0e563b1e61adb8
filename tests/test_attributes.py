"""Tests for vctcore.attributes: schema, conditioning bins, BMI and table checks."""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from vctcore import attributes as A
from vctcore.attributes import (ATTRIBUTES, CONDITIONING_ATTRIBUTES, AttributeRangeError, bin_index, bin_labels,
                                bmi, check_table, validate_table)

EXPECTED_COLUMNS = ("sex", "age_years", "height_cm", "weight_kg", "bfp_pct", "mmp_pct", "bone_density_hu",
                    "body_volume_l")


def _valid_table() -> pd.DataFrame:
    return pd.DataFrame({
        "id": ["P0000", "P0001", "P0002"],
        "sex": ["F", "M", "F"],
        "age_years": [34.0, 61.0, 80.0],
        "height_cm": [162.0, 178.0, 158.0],
        "weight_kg": [60.0, 90.0, 55.0],
        "bfp_pct": [30.0, 27.0, 41.0],
        "mmp_pct": [32.0, 36.0, 24.0],
        "bone_density_hu": [210.0, 150.0, 95.0],
        "body_volume_l": [58.0, 87.0, 54.0],
    })


def test_schema_names_units_and_ranges():
    assert tuple(ATTRIBUTES) == EXPECTED_COLUMNS
    assert CONDITIONING_ATTRIBUTES == ("sex", "age_years", "height_cm", "weight_kg")
    assert ATTRIBUTES["bone_density_hu"].unit == "HU" and "L1" in ATTRIBUTES["bone_density_hu"].description
    assert ATTRIBUTES["body_volume_l"].derived and ATTRIBUTES["body_volume_l"].unit == "L"
    for attr in ATTRIBUTES.values():
        if attr.is_categorical:
            assert attr.categories == ("F", "M") and attr.low is None
        else:
            assert attr.low < attr.high and attr.unit


@pytest.mark.parametrize(("name", "value", "label"), [
    ("height_cm", 175.0, "170-180"),
    ("height_cm", 170.0, "170-180"),  # lower edge belongs to the bin
    ("height_cm", 180.0, "180-190"),  # upper edge belongs to the next bin
    ("height_cm", 139.9, "<140"),
    ("height_cm", 200.0, "200+"),
    ("height_cm", 260.0, "200+"),
    ("age_years", 55.0, "50-60"),
    ("age_years", 18.0, "<20"),
    ("age_years", 90.0, "90+"),
    ("weight_kg", 72.5, "70-80"),
    ("weight_kg", 39.0, "<40"),
    ("weight_kg", 151.0, "150+"),
    ("bfp_pct", 27.0, "25-30"),
    ("mmp_pct", 52.0, "50+"),
    ("height_cm", float("nan"), "none"),
    ("height_cm", None, "none"),
    ("sex", "F", "F"),
    ("sex", "M", "M"),
    ("sex", None, "none"),
    ("sex", float("nan"), "none"),
])
def test_bin_index_labels(name, value, label):
    idx = bin_index(name, [value])
    assert idx.dtype == np.int64 and idx.shape == (1,)
    assert bin_labels(name)[idx[0]] == label


def test_bin_labels_and_vectorised_index():
    assert bin_labels("sex") == ["none", "F", "M"]
    assert bin_labels("age_years") == ["none", "<20", "20-30", "30-40", "40-50", "50-60", "60-70", "70-80",
                                       "80-90", "90+"]
    labels = bin_labels("height_cm")
    assert labels[0] == "none" and labels[1] == "<140" and labels[-1] == "200+"
    idx = bin_index("height_cm", pd.Series([150.0, np.nan, 185.0]))
    assert [labels[i] for i in idx] == ["150-160", "none", "180-190"]
    assert bin_index("height_cm", 175.0).tolist() == [labels.index("170-180")]
    assert bin_index("sex", np.array(["M", "F", ""], dtype=object)).tolist() == [2, 1, 0]


def test_bin_errors():
    with pytest.raises(ValueError, match=re.escape(A.UNKNOWN_CATEGORY.format(name="sex", value="X",
                                                                             allowed=["F", "M"]))):
        bin_index("sex", ["F", "X"])
    with pytest.raises(ValueError, match="attribute 'bone_density_hu' has no conditioning bins"):
        bin_labels("bone_density_hu")
    with pytest.raises(ValueError, match="unknown attribute 'shoe_size'"):
        bin_index("shoe_size", [42])


def test_bmi_scalar_and_vector():
    assert math.isclose(bmi(180.0, 81.0), 25.0)
    np.testing.assert_allclose(bmi(np.array([160.0, 200.0]), np.array([64.0, 100.0])), [25.0, 25.0])


def test_valid_table_passes():
    df = _valid_table()
    assert validate_table(df, required=EXPECTED_COLUMNS) == []
    assert check_table(df) is df


def test_out_of_range_message_names_column_row_value_and_range():
    df = _valid_table()
    df.loc[1, "bfp_pct"], df.loc[1, "mmp_pct"] = 75.0, 10.0
    expected = A.OUT_OF_RANGE.format(column="bfp_pct", rows="P0001", values="75", low=3, high=70, unit="%")
    assert validate_table(df) == [expected]
    with pytest.raises(AttributeRangeError, match=re.escape(expected)) as info:
        check_table(df)
    assert isinstance(info.value, ValueError)
    assert "bfp_pct" in str(info.value) and "P0001" in str(info.value) and "[3, 70]" in str(info.value)


def test_rows_named_by_index_without_id_and_many_rows_truncated():
    df = pd.DataFrame({"height_cm": [120.0] * 8 + [170.0]})
    (problem,) = validate_table(df)
    assert problem.startswith("height_cm: row(s) 0, 1, 2, 3, 4 (and 3 more) have value(s) 120, 120")
    assert "outside the allowed range [130, 215] cm" in problem


def test_category_numeric_missing_and_sum_problems():
    df = _valid_table()
    df.loc[0, "sex"] = "X"
    df.loc[2, "age_years"] = np.nan
    df.loc[1, "bfp_pct"], df.loc[1, "mmp_pct"] = 40.0, 50.0
    problems = validate_table(df.drop(columns=["weight_kg"]), required=["weight_kg"])
    assert problems[0] == A.MISSING_COLUMNS.format(missing=["weight_kg"])
    assert any(p.startswith("sex: row(s) P0000 have value(s) 'X'; allowed categories: ['F', 'M']") for p in problems)
    assert any(p.startswith("age_years: row(s) P0002 have non-numeric or missing value(s)") for p in problems)
    assert A.SUM_TOO_HIGH.format(rows="P0001", values="90", high=85) in problems
