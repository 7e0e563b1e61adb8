"""Counterfactual pairs (vctcore.counterfactual): the same seed with one attribute changed.

Fast tests use an untrained generator (tests/untrained_generator.py: real code paths, random weights), so
they check the mechanics: same noise, conditioning reaching the image, both images measured the same way.
The slow test checks the direction of a weight change on the shipped generator."""
from __future__ import annotations

import math

import numpy as np
import pytest

from untrained_generator import write_untrained_generator
from vctcore.counterfactual import ERR_NO_CHANGE, change_table, check_change, counterfactual_pair, difference_rgb
from vctcore.generator import Generator
from vctcore.measured import MEASURED, MeasuredAttributes

BASE = {"sex": "M", "age_years": 45, "height_cm": 178, "weight_kg": 70}
LABELS = [label for label, _ in MEASURED.values()]


@pytest.fixture(scope="module")
def generator(tmp_path_factory) -> Generator:
    return Generator.from_pretrained(write_untrained_generator(tmp_path_factory.mktemp("gen") / "untrained"),
                                     device="cpu")


def test_the_same_seed_and_unchanged_attributes_give_identical_volumes(generator):
    seen = []
    before, after, diff = counterfactual_pair(generator, BASE, {"weight_kg": 70}, seed=3,
                                              progress=lambda d, n, what: seen.append((d, n)))
    np.testing.assert_array_equal(before.ct.data, after.ct.data)
    np.testing.assert_array_equal(before.seg.data, after.seg.data)
    assert before.seed == after.seed
    assert not diff.hu.any()
    assert (diff.changes["change"].dropna() == 0).all()
    assert seen[0] == (0, 4) and seen[-1] == (4, 4)


def test_a_changed_weight_changes_the_image_and_every_measured_quantity_is_tabled(generator):
    before, after, diff = counterfactual_pair(generator, BASE, {"weight_kg": 110}, seed=3, steps=1)
    assert before.attributes["weight_kg"] == 70 and after.attributes["weight_kg"] == 110
    assert before.seed == after.seed  # the same initial noise
    assert np.abs(after.ct.data - before.ct.data).max() > 1.0
    np.testing.assert_allclose(diff.hu, after.ct.data - before.ct.data)
    table = diff.changes
    assert list(table["quantity"][: len(LABELS)]) == LABELS
    organ_rows = table.iloc[len(LABELS):]
    assert organ_rows["quantity"].str.endswith(" volume").all() and (organ_rows["unit"] == "mL").all()
    measured = table.iloc[: len(LABELS)].dropna(subset=["before", "after"])
    np.testing.assert_allclose(measured["change"], measured["after"] - measured["before"])
    assert set(diff.measured_before.values) == set(MEASURED)


def test_another_seed_gives_another_patient(generator):
    a, _, _ = counterfactual_pair(generator, BASE, {"weight_kg": 70}, seed=3, steps=1)
    b, _, _ = counterfactual_pair(generator, BASE, {"weight_kg": 70}, seed=4, steps=1)
    assert np.abs(a.ct.data - b.ct.data).max() > 1.0


def test_changes_that_cannot_change_the_image_are_refused_with_the_reason(generator):
    with pytest.raises(ValueError, match=ERR_NO_CHANGE):
        counterfactual_pair(generator, BASE, {}, seed=0)
    with pytest.raises(ValueError, match="unknown attribute 'mass'"):
        counterfactual_pair(generator, BASE, {"mass": 80}, seed=0)
    with pytest.raises(ValueError, match="conditioned on sex, age_years, height_cm, weight_kg only; changing bfp_pct"):
        check_change({"bfp_pct": 30}, ("sex", "age_years", "height_cm", "weight_kg"))


def test_the_change_table_subtracts_and_lists_only_organs_present_in_either_image():
    nan = math.nan
    before = MeasuredAttributes({k: 1.0 for k in MEASURED} | {"bfp_pct": nan}, "m")
    after = MeasuredAttributes({k: 3.0 for k in MEASURED}, "m")
    table = change_table(before, after, {"liver": 100.0, "spleen": 0.0, "heart": 0.0},
                         {"liver": 150.0, "spleen": 20.0, "heart": 0.0}).set_index("quantity")
    assert table.loc["Weight", "change"] == 2.0 and math.isnan(table.loc["Body fat", "change"])
    assert table.loc["liver volume", "change"] == 50.0 and table.loc["spleen volume", "before"] == 0.0
    assert "heart volume" not in table.index


def test_the_difference_map_is_blue_below_white_at_and_red_above_zero():
    rgb = difference_rgb(np.array([[-500.0, -100.0, 0.0, 100.0, 500.0]]), 100.0)
    assert rgb.shape == (1, 5, 3) and rgb.dtype == np.uint8
    (dark_blue, blue, white, red, dark_red) = rgb[0].astype(int)
    assert (white == [247, 247, 247]).all() and (blue == dark_blue).all() and (red == dark_red).all()
    assert blue[2] > blue[0] + 50 and red[0] > red[2] + 50
    with pytest.raises(ValueError, match="limit_hu"):
        difference_rgb(np.zeros(3), 0.0)


@pytest.mark.slow
def test_more_weight_on_the_shipped_generator_gives_a_heavier_larger_body():
    gen = Generator.from_pretrained(device="cpu")
    _, _, diff = counterfactual_pair(gen, BASE, {"weight_kg": 110}, seed=0, steps=2)
    table = diff.changes.set_index("quantity")
    assert table.loc["Weight", "change"] > 10
    assert table.loc["Body volume", "change"] > 10
