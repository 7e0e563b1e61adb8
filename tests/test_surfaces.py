"""3D organ surfaces (vctcore.surfaces): meshes in the right place in mm, legend names, colours, body surface."""
from __future__ import annotations

import numpy as np
import pytest

from vctcore.render import MERGED_COLOURS
from vctcore.surfaces import BODY_NAME, organ_figure, organ_surfaces

SPACING = (2.0, 3.0, 4.0)
ORIGIN = (10.0, -5.0, 100.0)
#: class value -> box (half-open voxel ranges per axis)
BOXES = {4: ((3, 8), (4, 10), (5, 12)), 1: ((12, 17), (2, 6), (14, 20))}


def _seg() -> np.ndarray:
    seg = np.zeros((20, 16, 24), np.uint8)
    for value, box in BOXES.items():
        seg[tuple(slice(a, b) for a, b in box)] = value
    return seg


def _trace(fig, name):
    (trace,) = [t for t in fig.data if t.name == name]
    return trace


def test_two_boxes_give_two_meshes_inside_their_mm_extents_with_legend_names_and_overlay_colours():
    fig = organ_figure(_seg(), SPACING, origin_mm=ORIGIN)
    assert [t.name for t in fig.data] == ["bone", "liver", BODY_NAME]
    assert all(t.type == "mesh3d" and t.showlegend for t in fig.data)
    for value, name in ((4, "liver"), (1, "bone")):
        t = _trace(fig, name)
        verts = np.stack([np.asarray(t.x), np.asarray(t.y), np.asarray(t.z)], axis=1)
        assert len(t.i) == len(t.j) == len(t.k) > 0 and int(np.max(t.i)) < len(verts)
        for axis, (a, b) in enumerate(BOXES[value]):
            sp, o = SPACING[axis], ORIGIN[axis]
            # the surface lies within half a voxel outside the box's voxel centres, and spans the box
            assert verts[:, axis].min() >= (a - 0.5 - 0.01) * sp + o
            assert verts[:, axis].max() <= (b - 0.5 + 0.01) * sp + o
            assert np.ptp(verts[:, axis]) >= (b - a - 1) * sp
        assert t.color == "rgb({},{},{})".format(*MERGED_COLOURS[value])
        assert t.opacity == 1
    body = _trace(fig, BODY_NAME)
    assert 0 < body.opacity < 1
    assert fig.layout.scene.aspectmode == "data"


def test_hover_gives_each_organs_volume_in_ml():
    (liver,) = organ_surfaces(_seg(), SPACING, classes=[4])
    assert liver.volume_ml == pytest.approx(5 * 6 * 7 * 2 * 3 * 4 / 1000)
    assert liver.faces.dtype == np.uint16 and liver.verts.dtype == np.float32


def test_an_empty_label_map_gives_no_trace():
    fig = organ_figure(np.zeros((10, 10, 10), np.uint8), SPACING)
    assert len(fig.data) == 0
    assert organ_surfaces(np.zeros((4, 4, 4), np.uint8), SPACING) == []


def test_the_body_surface_comes_from_the_ct_and_skips_the_air_inside_the_body():
    seg = _seg()
    ct = np.full(seg.shape, -1000.0, np.float32)
    ct[1:19, 1:15, 2:23] = 40.0
    ct[8:12, 7:11, 9:15] = -900.0  # a lung-like air pocket inside the body
    body = _trace(organ_figure(seg, SPACING, ct=ct, classes=[]), BODY_NAME)
    verts = np.stack([np.asarray(body.x), np.asarray(body.y), np.asarray(body.z)], axis=1) / np.array(SPACING)
    inside_pocket = np.all((verts > [8, 7, 9]) & (verts < [11, 10, 14]), axis=1)
    assert not inside_pocket.any()
    assert verts[:, 0].min() == pytest.approx(0.5, abs=0.6) and verts[:, 2].max() == pytest.approx(22.5, abs=0.6)


def test_a_single_voxel_class_still_gets_a_surface_and_big_meshes_get_a_coarser_step():
    seg = np.zeros((12, 12, 12), np.uint8)
    seg[5, 5, 9] = 3
    seg[1:11, 1:11, 1:6] = 12
    kidney, glutes = organ_surfaces(seg, SPACING)
    assert kidney.name == "kidney" and len(kidney.faces) > 0
    fine = organ_surfaces(seg, SPACING, classes=[12])[0]
    coarse = organ_surfaces(seg, SPACING, classes=[12], max_faces=50)[0]
    assert fine.step == 1 and coarse.step > 1 and len(coarse.faces) < len(fine.faces)


def test_bad_inputs_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="must be 3D"):
        organ_surfaces(np.zeros((4, 4), np.uint8), SPACING)
    with pytest.raises(ValueError, match="spacing_mm"):
        organ_surfaces(_seg(), (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="differ in shape"):
        organ_figure(_seg(), SPACING, ct=np.zeros((3, 3, 3)))


def test_the_bench_script_reports_time_size_and_cpu_for_a_default_grid_patient():
    from bench_scripts import bench_main

    out = bench_main("viewer3d")(["--repeat", "0"])
    assert out["grid_shape"] == [128, 96, 272] and out["n_traces"] == out["n_organ_meshes"] + 1 >= 10
    assert out["seconds"] > 0 and 0.1 < out["figure_json_mb"] < 5 and isinstance(out["cpu"], str)
