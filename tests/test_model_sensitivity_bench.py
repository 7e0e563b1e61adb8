"""bench/model_sensitivity.py's perturbations on a hand-made CT of known HU."""
from __future__ import annotations

import numpy as np
import pytest
from bench_scripts import bench_module


def _hu() -> np.ndarray:
    """20 x 20 x 20: air outside, a fat half (-100 HU) and a lean half (40 HU) inside a 12^3 body."""
    hu = np.full((20, 20, 20), -1000.0, np.float32)
    hu[4:16, 4:16, 4:10] = -100.0
    hu[4:16, 4:16, 10:16] = 40.0
    return hu


def test_shifts_move_only_their_band() -> None:
    m = bench_module("model_sensitivity")
    hu = _hu()
    lean = m.perturb(hu, "lean", lean_shift=-14.0, fat_shift=5.0, sigma=0.7)
    assert lean[8, 8, 12] == pytest.approx(26.0) and lean[8, 8, 6] == pytest.approx(-100.0)
    assert lean[0, 0, 0] == pytest.approx(-1000.0)
    fat = m.perturb(hu, "fat", lean_shift=-14.0, fat_shift=5.0, sigma=0.7)
    assert fat[8, 8, 6] == pytest.approx(-95.0) and fat[8, 8, 12] == pytest.approx(40.0)
    assert hu[8, 8, 12] == pytest.approx(40.0)  # the input is not changed
    seg = np.zeros(hu.shape, np.uint8)
    seg[8, 8, 12] = 1
    bone = m.perturb(hu, "bone", lean_shift=-14.0, fat_shift=5.0, sigma=0.7, seg=seg, bone_shift=100.0)
    assert bone[8, 8, 12] == pytest.approx(140.0) and bone[8, 8, 13] == pytest.approx(40.0)


def test_blur_spreads_the_interface() -> None:
    m = bench_module("model_sensitivity")
    hu = _hu()
    assert m.interface_share(hu) == 0.0
    blurred = m.perturb(hu, "blur", lean_shift=0.0, fat_shift=0.0, sigma=1.0)
    assert m.interface_share(blurred) > 0.02
    assert np.all(blurred[hu <= -500.0] == -1000.0)  # outside the body nothing moves
