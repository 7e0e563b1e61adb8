"""Stray islands of a label map: found by class and size, relabelled to their neighbours' class, small
organs kept."""
from __future__ import annotations

import numpy as np
import pytest

from vctcore.label_islands import fragments, min_island_voxels, remove_small_islands, small_islands


def _map() -> np.ndarray:
    seg = np.zeros((20, 16, 12), np.uint8)
    seg[2:10, 2:10, 2:10] = 3        # an organ
    seg[5, 5, 5] = 2                 # a one-voxel speck of another class inside it
    seg[2:6, 12:16, 0:4] = 2         # ... whose main component lies elsewhere (64 voxels)
    seg[14:17, 3:6, 3:6] = 1         # a bone block (27 voxels)
    seg[12, 12, 8] = 1               # a bone speck in the background
    seg[0, 0, 0] = 1                 # ... and one in the array's corner
    seg[15, 12, 2] = 4               # a whole small organ of 2 voxels: its class's only component
    seg[15, 12, 3] = 4
    seg[18:20, 14:16, 0:3] = 5       # two components of class 5 (12 voxels each), both kept
    seg[18:20, 0:2, 9:12] = 5
    return seg


def test_specks_take_their_neighbours_class_and_small_organs_stay():
    seg = _map()
    before = seg.copy()
    out, n = remove_small_islands(seg, min_voxels=10)
    assert np.array_equal(seg, before)  # the input is left as it was
    assert n == 3
    assert out[5, 5, 5] == 3  # inside the organ: the organ's class
    assert out[12, 12, 8] == 0 and out[0, 0, 0] == 0  # bone specks in background (one on the border)
    assert (out == 4).sum() == 2  # the small organ is its class's largest component
    lone = seg.copy()
    lone[2:6, 12:16, 0:4] = 0
    assert remove_small_islands(lone, 10)[0][5, 5, 5] == 2  # so is a class's only speck: it stays
    assert (out == 5).sum() == 24 and (out == 1).sum() == 27 and (out == 2).sum() == 64
    changed = out != seg
    assert changed.sum() == 3
    assert fragments(out, classes=range(1, 6)) == fragments(seg, classes=range(1, 6)) - 3
    # the result's islands are all gone at this threshold
    assert small_islands(out, 10) == []


def test_threshold_and_found_islands():
    seg = _map()
    found = small_islands(seg, 10)
    assert sorted((c, int(m.sum())) for c, _, m in found) == [(1, 1), (1, 1), (2, 1)]
    for c, box, mask in found:  # the box holds the island and the voxels that touch it
        assert np.all(seg[box][mask] == c) and mask.shape == seg[box].shape
    # components of 12 voxels count as islands from 13 up, but one of two equal components is kept
    fives = [m for c, _, m in small_islands(seg, 13) if c == 5]
    assert len(fives) == 1 and int(fives[0].sum()) == 12
    assert small_islands(seg, 1) == [] and remove_small_islands(seg, 0)[1] == 0


def test_ties_go_to_the_lower_class():
    seg = np.zeros((5, 5, 5), np.uint8)
    seg[:, :, :2] = 6
    seg[:, :, 3:] = 7
    seg[2, 2, 2] = 9  # a speck between two classes, touching 9 voxels of each and 8 of class 0
    seg[0, 0, 4] = 9  # a speck of the same class: the first in raster order counts as the largest
    out, n = remove_small_islands(seg, 5)
    assert n == 1 and out[0, 0, 4] == 9 and out[2, 2, 2] == 6


def test_volume_threshold_in_voxels_and_bad_input():
    assert min_island_voxels(2.8, (6.0, 6.0, 8.0)) == 10  # 0.288 mL per voxel
    assert min_island_voxels(2.88, (6.0, 6.0, 8.0)) == 10
    assert min_island_voxels(0.0, (1.5, 1.5, 1.5)) == 0
    with pytest.raises(ValueError, match=">= 0 mL"):
        min_island_voxels(-1.0, (6.0, 6.0, 8.0))
    with pytest.raises(ValueError, match="3D"):
        small_islands(np.zeros((4, 4), np.uint8), 10)
