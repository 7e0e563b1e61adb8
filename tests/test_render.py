"""vctcore.render: HU windows, radiological orientation, aspect/resampling, overlays."""
from __future__ import annotations

import numpy as np
import pytest

from vctcore.labels import MERGED_CLASSES
from vctcore.render import (
    MERGED_COLOURS,
    WINDOWS,
    blend,
    default_slices,
    display_aspect,
    legend_entries,
    overlay_rgba,
    render_slice,
    resample_for_display,
    slice_2d,
    window,
)

# ---------------------------------------------------------------- windows


def test_window_presets_are_the_clinical_ones():
    assert WINDOWS["soft tissue"] == (40.0, 400.0)
    assert WINDOWS["lung"] == (-600.0, 1500.0)
    assert WINDOWS["bone"] == (400.0, 1800.0)


@pytest.mark.parametrize("level, width", list(WINDOWS.values()))
def test_window_edges_and_middle(level, width):
    lo, hi = level - width / 2, level + width / 2
    hu = np.array([-3000.0, lo - 1, lo, level, hi, hi + 1, 3000.0])
    out = window(hu, level, width)
    assert out.dtype == np.uint8
    assert out.tolist()[:3] == [0, 0, 0]
    assert out[3] in (127, 128)
    assert out.tolist()[4:] == [255, 255, 255]


def test_window_is_linear_and_monotone():
    hu = np.linspace(-160, 240, 401)  # soft-tissue window, 1 HU steps
    out = window(hu, 40, 400).astype(int)
    assert np.all(np.diff(out) >= 0)
    np.testing.assert_allclose(out, (hu + 160) * 255 / 400, atol=0.5)


def test_window_keeps_shape_and_rejects_bad_width():
    assert window(np.zeros((3, 4, 5)), 0, 100).shape == (3, 4, 5)
    with pytest.raises(ValueError, match="width"):
        window(np.zeros(3), 0, 0)


# ---------------------------------------------------------------- orientation

SHAPE = (10, 12, 14)  # X (toward patient right), Y (toward anterior), Z (toward superior)


def _marker_volume() -> np.ndarray:
    """Zero volume with one bright voxel near the patient's right, anterior, superior corner."""
    vol = np.zeros(SHAPE, dtype=np.int16)
    vol[8, 9, 11] = 1  # high i = right, high j = anterior, high k = superior
    return vol


def _marker_pos(img: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(img)
    assert len(rows) == 1
    return int(rows[0]), int(cols[0])


def test_axial_seen_from_feet_anterior_up_patient_right_on_image_left():
    img = slice_2d(_marker_volume(), "axial", 11)
    assert img.shape == (SHAPE[1], SHAPE[0])  # rows = Y, cols = X
    r, c = _marker_pos(img)
    assert r == SHAPE[1] - 1 - 9 and r < img.shape[0] / 2  # anterior -> upper half
    assert c == SHAPE[0] - 1 - 8 and c < img.shape[1] / 2  # patient right -> image left


def test_coronal_facing_you_superior_up_patient_right_on_image_left():
    img = slice_2d(_marker_volume(), "coronal", 9)
    assert img.shape == (SHAPE[2], SHAPE[0])  # rows = Z, cols = X
    r, c = _marker_pos(img)
    assert r == SHAPE[2] - 1 - 11 and r < img.shape[0] / 2  # superior -> top
    assert c == SHAPE[0] - 1 - 8 and c < img.shape[1] / 2  # patient right -> image left


def test_sagittal_superior_up_anterior_on_image_left():
    img = slice_2d(_marker_volume(), "sagittal", 8)
    assert img.shape == (SHAPE[2], SHAPE[1])  # rows = Z, cols = Y
    r, c = _marker_pos(img)
    assert r == SHAPE[2] - 1 - 11 and r < img.shape[0] / 2  # superior -> top
    assert c == SHAPE[1] - 1 - 9 and c < img.shape[1] / 2  # anterior -> image left


def test_slice_2d_other_slices_do_not_hold_the_marker():
    vol = _marker_volume()
    assert slice_2d(vol, "axial", 10).sum() == 0
    assert slice_2d(vol, "coronal", 8).sum() == 0
    assert slice_2d(vol, "sagittal", 7).sum() == 0


def test_slice_2d_rejects_bad_arguments():
    vol = _marker_volume()
    with pytest.raises(IndexError):
        slice_2d(vol, "axial", SHAPE[2])
    with pytest.raises(ValueError, match="plane"):
        slice_2d(vol, "oblique", 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="3D"):
        slice_2d(vol[0], "axial", 0)


# ---------------------------------------------------------------- aspect and resampling

SPACING = (6.0, 6.0, 8.0)


def test_display_aspect_for_anisotropic_voxels():
    assert display_aspect(SPACING, "axial") == pytest.approx(1.0)
    assert display_aspect(SPACING, "coronal") == pytest.approx(8 / 6)
    assert display_aspect(SPACING, "sagittal") == pytest.approx(8 / 6)
    assert display_aspect((2.0, 3.0, 5.0), "axial") == pytest.approx(3 / 2)
    with pytest.raises(ValueError, match="positive"):
        display_aspect((0.0, 1.0, 1.0), "axial")


def test_resample_for_display_makes_square_pixels():
    vol = np.zeros((112, 80, 272), dtype=np.float32)
    cor = slice_2d(vol, "coronal", 40)  # (272, 112) at 8 x 6 mm
    out = resample_for_display(cor, SPACING, "coronal")
    assert out.shape == (round(272 * 8 / 6), 112)  # 363 x 112 at 6 mm: 2176 mm x 672 mm kept
    ax = resample_for_display(slice_2d(vol, "axial", 0), SPACING, "axial")
    assert ax.shape == (80, 112)
    fine = resample_for_display(cor, SPACING, "sagittal", pixel_mm=2.0)
    assert fine.shape == (272 * 4, 112 * 3)


def test_resample_for_display_keeps_labels_exact_with_order_0():
    lab = np.zeros((20, 10), dtype=np.uint8)
    lab[5:10, 2:4] = 7
    lab[12:, 6:] = 3
    out = resample_for_display(lab, SPACING, "coronal", order=0)
    assert out.dtype == np.uint8
    assert set(np.unique(out)) == {0, 3, 7}
    # 5 rows of 8 mm become about 40 mm / 6 mm rows
    assert abs(int((out[:, 3] == 7).sum()) - round(5 * 8 / 6)) <= 1


# ---------------------------------------------------------------- overlays


def test_merged_colours_cover_all_classes_and_are_distinct():
    assert set(MERGED_COLOURS) == set(MERGED_CLASSES) - {0}
    assert len(set(MERGED_COLOURS.values())) == len(MERGED_COLOURS)
    rgb = np.array(list(MERGED_COLOURS.values()), dtype=float)
    d = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1) + np.eye(len(rgb)) * 1e3
    assert d.min() > 25  # no two classes nearly the same colour


def test_overlay_rgba_colours_and_opacity():
    lab = np.array([[0, 1], [10, 99]], dtype=np.uint8)  # 99 has no colour
    ov = overlay_rgba(lab, MERGED_COLOURS, 0.4)
    assert ov.shape == (2, 2, 4) and ov.dtype == np.uint8
    assert ov[0, 0].tolist() == [0, 0, 0, 0]
    assert ov[0, 1].tolist() == [*MERGED_COLOURS[1], 102]
    assert ov[1, 0].tolist() == [*MERGED_COLOURS[10], 102]
    assert ov[1, 1, 3] == 0
    assert overlay_rgba(lab, MERGED_COLOURS, 0.0)[..., 3].max() == 0
    with pytest.raises(ValueError, match="opacity"):
        overlay_rgba(lab, MERGED_COLOURS, 1.5)


def test_blend_alpha_compositing():
    grey = np.array([[100, 200]], dtype=np.uint8)
    ov = np.zeros((1, 2, 4), dtype=np.uint8)
    ov[0, 1] = (255, 0, 0, 255)
    out = blend(grey, ov)
    assert out.shape == (1, 2, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [100, 100, 100]  # transparent: grey untouched
    assert out[0, 1].tolist() == [255, 0, 0]  # opaque: colour only
    ov[0, 1, 3] = 128
    assert out[0, 0].tolist() == blend(grey, ov)[0, 0].tolist()
    assert blend(grey, ov)[0, 1].tolist() == [round(200 * (1 - 128 / 255) + 255 * 128 / 255),
                                              round(200 * (1 - 128 / 255)), round(200 * (1 - 128 / 255))]
    assert blend(grey).tolist() == [[[100] * 3, [200] * 3]]


def test_render_slice_end_to_end():
    hu = np.full((12, 8, 20), -1000.0, dtype=np.float32)
    hu[2:10, 2:6, 2:18] = 40.0
    lab = np.zeros(hu.shape, dtype=np.uint8)
    lab[4:8, 3:5, 5:15] = 4
    rgb = render_slice(hu, "coronal", 4, spacing_mm=SPACING, level=40, width=400, labels=lab, opacity=1.0)
    assert rgb.shape == (round(20 * 8 / 6), 12, 3) and rgb.dtype == np.uint8
    assert (rgb == np.array(MERGED_COLOURS[4], dtype=np.uint8)).all(axis=-1).any()
    plain = render_slice(hu, "coronal", 4, spacing_mm=SPACING, level=40, width=400)
    assert (plain[..., 0] == plain[..., 1]).all()  # grey only
    assert plain.max() in (127, 128) and plain.min() == 0


def test_legend_entries():
    entries = legend_entries([0, 4, 10])
    assert [e[0] for e in entries] == [4, 10]
    assert entries[0][1] == "liver" and entries[0][2] == "#{:02x}{:02x}{:02x}".format(*MERGED_COLOURS[4])
    assert len(legend_entries()) == 16


def test_render_does_not_import_streamlit():
    import subprocess
    import sys

    code = "import sys, vctcore.render; sys.exit('streamlit' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_default_slices_go_through_the_focus_class_and_the_body_middle():
    lab = np.zeros((20, 10, 30), dtype=np.uint8)
    lab[4:16, 2:8, 3:27] = 1  # body: x 4..15, y 2..7, z 3..26
    assert default_slices(lab) == {"axial": 14, "coronal": 4, "sagittal": 9}  # no liver: middle of the body
    lab[11:14, 5:8, 19:22] = 4  # liver centroid (12, 6, 20)
    assert default_slices(lab) == {"axial": 20, "coronal": 6, "sagittal": 9}
    lab[7:10, 3:6, 24:27] = 15  # brain centroid x = 8: the midline
    assert default_slices(lab) == {"axial": 20, "coronal": 6, "sagittal": 8}
    assert default_slices(np.zeros((4, 6, 8), dtype=np.uint8)) == {"axial": 4, "coronal": 3, "sagittal": 2}
