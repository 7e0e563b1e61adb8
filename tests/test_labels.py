"""vctcore.labels: fine phantom labels, TotalSegmentator names and the paper's 16 merged classes."""
from __future__ import annotations

import numpy as np
import pytest

from vctcore import labels as lb
from vctcore.labels import (
    BONE_LABELS,
    FAT_LABELS,
    FINE_LABEL_NAMES,
    FINE_LABELS,
    MERGED_CLASS_IDS,
    MERGED_CLASSES,
    MUSCLE_LABELS,
    N_MERGED_CLASSES,
    fine_to_merged,
    label_values,
    merged_class_of,
    totalsegmentator_lookup,
    totalsegmentator_to_merged,
)

ALL_MERGED = set(range(1, N_MERGED_CLASSES + 1))


def test_tables_are_consistent():
    assert len(MERGED_CLASSES) == N_MERGED_CLASSES + 1 and MERGED_CLASSES[0] == "background"
    assert all(MERGED_CLASS_IDS[name] == i for i, name in MERGED_CLASSES.items())
    assert FINE_LABELS["background"] == 0
    assert sorted(FINE_LABEL_NAMES) == list(range(len(FINE_LABELS)))
    assert all(FINE_LABELS[name] == i for i, name in FINE_LABEL_NAMES.items())
    for group in (FAT_LABELS, MUSCLE_LABELS, BONE_LABELS):
        assert set(group) <= set(FINE_LABELS)


def test_every_merged_class_is_reachable_from_the_fine_labels():
    merged = fine_to_merged(np.arange(len(FINE_LABELS)))
    assert set(merged.tolist()) - {0} == ALL_MERGED


def test_totalsegmentator_tasks_cover_all_merged_classes():
    total = totalsegmentator_to_merged("total")
    appendicular = totalsegmentator_to_merged("appendicular_bones")
    assert set(total.values()) - {0} == ALL_MERGED - {MERGED_CLASS_IDS["appendicular_bones"]}
    assert set(appendicular.values()) == {MERGED_CLASS_IDS["appendicular_bones"]}
    assert (set(total.values()) | set(appendicular.values())) - {0} == ALL_MERGED
    assert len(total) + len(appendicular) == 128  # the paper's 117 + 11 organs


@pytest.mark.parametrize(
    "name, merged",
    [
        ("femur_left", "bone"),
        ("vertebrae_C1", "bone"),
        ("rib_left_3", "bone"),
        ("skull", "bone"),
        ("tibia", "appendicular_bones"),
        ("tibia_right", "appendicular_bones"),
        ("foot_bones_left", "appendicular_bones"),
        ("gluteus_medius_right", "gluteus_muscles"),
        ("gluteus_left", "gluteus_muscles"),
        ("lung_middle_lobe_right", "lung_middle_lobe"),
        ("lung_upper_lobe_left", "lung_upper_lobes"),
        ("kidney_right", "kidney"),
        ("autochthon_left", "autochthonous_muscles"),
        ("iliopsoas_right", "iliopsoas"),
        ("colon", "background"),
        ("subcutaneous_fat", "background"),
    ],
)
def test_spot_checks(name, merged):
    assert merged_class_of(name) == MERGED_CLASS_IDS[merged]


def test_spot_checks_against_totalsegmentator_names():
    total = totalsegmentator_to_merged("total")
    appendicular = totalsegmentator_to_merged("appendicular_bones")
    assert total["femur_left"] == MERGED_CLASS_IDS["bone"]
    assert total["gluteus_medius_right"] == MERGED_CLASS_IDS["gluteus_muscles"]
    assert total["lung_middle_lobe_right"] == MERGED_CLASS_IDS["lung_middle_lobe"]
    assert total["colon"] == 0
    assert appendicular["tibia"] == MERGED_CLASS_IDS["appendicular_bones"]


def test_totalsegmentator_lookup_matches_names():
    from totalsegmentator.map_to_binary import class_map

    lut = totalsegmentator_lookup("total")
    for value, name in class_map["total"].items():
        assert lut[value] == merged_class_of(name)
    with pytest.raises(KeyError, match="no_such_task"):
        totalsegmentator_to_merged("no_such_task")


def test_is_bone():
    assert lb.is_bone("femur_left") and lb.is_bone("tibia") and lb.is_bone("sacrum")
    assert not lb.is_bone("liver") and not lb.is_bone("spinal_canal")


def test_fine_to_merged_on_a_small_array():
    fine = np.array(
        [[FINE_LABELS["liver"], FINE_LABELS["femur_right"]], [FINE_LABELS["tibia_left"], FINE_LABELS["bowel"]]],
        dtype=np.uint8,
    )[:, :, None]
    merged = fine_to_merged(fine)
    assert merged.dtype == np.uint8 and merged.shape == fine.shape
    expected = [[MERGED_CLASS_IDS["liver"], MERGED_CLASS_IDS["bone"]], [MERGED_CLASS_IDS["appendicular_bones"], 0]]
    assert merged[:, :, 0].tolist() == expected
    assert fine_to_merged(np.zeros((0,), np.uint8)).shape == (0,)


@pytest.mark.parametrize("bad", [len(FINE_LABELS), 255, -1])
def test_fine_to_merged_rejects_values_that_are_not_fine_labels(bad):
    with pytest.raises(ValueError, match=f"label value {bad} is not a fine label"):
        fine_to_merged(np.array([0, 1, bad], dtype=np.int16))


def test_label_values():
    assert label_values(["liver", "spleen"]) == [FINE_LABELS["liver"], FINE_LABELS["spleen"]]
    with pytest.raises(KeyError, match="spleeen"):
        label_values(["liver", "spleeen"])
