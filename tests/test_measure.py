"""Measurement on phantoms (vctcore.measure): accuracy per backend, coverage, record, errors.

Observed on the default 6 x 6 x 8 mm phantom grid (20 reference-population phantoms, supine and
standing; see test_accuracy_20_phantoms):

* labels backend (the phantom's fine labels): mass, BFP, MMP equal the builder's calibrated values;
  against the request mass -0.4..+1.2 % (mean +0.25 %), BFP and MMP within 0.55 points.
* threshold backend: mass -0.4..+1.2 %, BFP -2.7..+2.1 points (mean -1.0; partial volume at
  fat/muscle borders). It identifies no muscle: body voxels at -29..150 HU are soft tissue (on the
  four phantoms below 1.3-1.5 times the labelled skeletal muscle: organs, vessels, skin and brain
  share that range), so muscle mass and MMP are not measured. The tests hold it to mass 3 %, BFP
  4 points, soft tissue 1.1-2x the labelled muscle.
* merged 16-class map (labels + thresholds): BFP -3.1..+1.9, MMP +7..+11 points.
* bone density: mean trabecular HU of L1-L3 reads 10-45 HU above the requested value (partial
  volume of the 2.5 mm cortex at 6 mm voxels); Spearman rho 0.975 against the request.
* height (vctcore.measure.height, when installed): within 1 cm of the request.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage
from scipy.stats import spearmanr

from vctcore.labels import FINE_LABEL_NAMES, FINE_LABELS
from vctcore.measure import MeasureError, Measurements, kernels, measure
from vctcore.measure.body import body_geometry
from vctcore.measure.morphology import fill_holes
from vctcore.measure.api import MUSCLE_FIELDS
from vctcore.measure.record import WHOLE_BODY_FIELDS
from vctcore.phantom import build_phantom
from vctcore.phantom.builder import REQUIRED, supported_rows
from vctcore.population import PopulationSpec
from vctcore.volume import CTVolume, LabelMap

REFERENCE = "assets/populations/adult_reference.yaml"
#: four reference patients spanning the attribute ranges, bone densities well apart
FOUR = [
    dict(sex="F", age_years=34, height_cm=163, weight_kg=58, bfp_pct=30, mmp_pct=31, bone_density_hu=240),
    dict(sex="M", age_years=58, height_cm=181, weight_kg=92, bfp_pct=29, mmp_pct=34, bone_density_hu=150),
    dict(sex="F", age_years=71, height_cm=158, weight_kg=70, bfp_pct=41, mmp_pct=24, bone_density_hu=85),
    dict(sex="M", age_years=26, height_cm=176, weight_kg=71, bfp_pct=15, mmp_pct=43, bone_density_hu=320),
]
POSES = ["supine", "standing", "supine", "supine"]


@pytest.fixture(scope="module")
def phantoms():
    return [build_phantom(a, seed=10 + i, pose=p) for i, (a, p) in enumerate(zip(FOUR, POSES))]


@pytest.fixture(scope="module")
def labelled(phantoms):
    return [measure(ph.ct, ph.labels) for ph in phantoms]


def _crop(ph, z0: int, z1: int) -> tuple[CTVolume, LabelMap]:
    """Axial slab z0..z1-1 of a phantom (CT and fine labels), affine shifted accordingly."""
    affine = ph.ct.affine.copy()
    affine[:3, 3] += affine[:3, 2] * z0
    ct = CTVolume(data=np.ascontiguousarray(ph.ct.data[:, :, z0:z1]), affine=affine)
    labels = LabelMap(data=np.ascontiguousarray(ph.labels.data[:, :, z0:z1]), affine=affine,
                      names=dict(FINE_LABEL_NAMES))
    return ct, labels


def _z_range(ph, *names: str) -> tuple[int, int]:
    zs = np.flatnonzero(ph.labels.mask(*names).any(axis=(0, 1)))
    return int(zs[0]), int(zs[-1])


def test_labels_backend_matches_request_and_builder(phantoms, labelled):
    for ph, m, a in zip(phantoms, labelled, FOUR):
        assert m.backend == "labels" and m.vocabulary == "fine" and m.coverage["whole_body"]
        assert abs(m.mass_kg - a["weight_kg"]) / a["weight_kg"] < 0.03, (a, m.mass_kg)
        assert abs(m.bfp_pct - a["bfp_pct"]) < 1.5 and abs(m.mmp_pct - a["mmp_pct"]) < 1.5, (a, m.bfp_pct, m.mmp_pct)
        rep = ph.report  # the builder calibrates with the same Appendix-B sums
        assert m.mass_kg == pytest.approx(rep["weight_kg"], rel=1e-4)
        assert m.bfp_pct == pytest.approx(rep["bfp_pct"], abs=1e-3)
        assert m.mmp_pct == pytest.approx(rep["mmp_pct"], abs=1e-3)
        assert m.body_volume_l == pytest.approx(rep["body_volume_l"], rel=1e-6)
        assert 0.08 < m.bone_kg / m.mass_kg < 0.25
        assert m.fat_kg + m.muscle_kg + m.bone_kg < m.mass_kg
        assert not m.not_measurable.get("mass_kg")


def test_threshold_backend_is_plausible(phantoms, labelled):
    for ph, lab, a in zip(phantoms, labelled, FOUR):
        m = measure(ph.ct, backend="threshold")
        assert m.vocabulary == "threshold" and m.coverage["whole_body"]
        assert abs(m.mass_kg - a["weight_kg"]) / a["weight_kg"] < 0.03
        assert abs(m.body_volume_l - lab.body_volume_l) / lab.body_volume_l < 0.02
        assert abs(m.bfp_pct - a["bfp_pct"]) < 4.0, (a, m.bfp_pct)
        # no muscle is identified: soft tissue (-29..150 HU: muscle, organs, vessels, skin) instead
        for name in ("muscle_kg", "mmp_pct"):
            assert getattr(m, name) is None and "segmentation that identifies muscle" in m.not_measurable[name]
        assert 1.1 < m.soft_tissue_kg / lab.muscle_kg < 2.0, (m.soft_tissue_kg, lab.muscle_kg)
        assert "muscle" not in m.scan_volume_l and m.scan_volume_l["soft_tissue"] > lab.scan_volume_l["muscle"]
        assert "soft tissue -29..150 HU" in m.table() and any("-29..150 HU" in n for n in m.notes)
        assert lab.soft_tissue_kg is None  # a label map names muscle; soft tissue is the threshold quantity
        for name in ("bone_density_hu", "l3_muscle_area_cm2", "height_cm"):
            assert getattr(m, name) is None and m.not_measurable[name]


def test_merged_map_measures_what_it_can(phantoms):
    ph, a = phantoms[1], FOUR[1]
    m = measure(ph.ct, ph.seg)
    assert m.vocabulary == "merged"
    assert abs(m.mass_kg - a["weight_kg"]) / a["weight_kg"] < 0.03
    assert abs(m.bfp_pct - a["bfp_pct"]) < 4.0
    assert m.bone_density_hu is None and "does not identify vertebrae" in m.not_measurable["bone_density_hu"]
    assert m.l3_sat_area_cm2 is None
    assert any("merged 16-class map" in n for n in m.notes)


def test_shared_body_geometry_gives_the_same_measurements(phantoms):
    """A geometry computed once and passed to both backends changes nothing; one of another grid is refused."""
    ph = phantoms[1]
    geometry = body_geometry(ph.ct.data, ph.ct.spacing_mm)
    for seg, backend in ((None, "threshold"), (ph.seg, "labels")):
        alone, shared = measure(ph.ct, seg, backend), measure(ph.ct, seg, backend, geometry=geometry)
        assert (alone.mass_kg, alone.bfp_pct, alone.mmp_pct) == (shared.mass_kg, shared.bfp_pct, shared.mmp_pct)
    crop, _ = _crop(ph, 0, ph.ct.shape[2] // 2)
    with pytest.raises(MeasureError, match="body geometry of a"):
        measure(crop, None, "threshold", geometry=geometry)


@pytest.mark.parametrize("rank", [2, 3])
def test_fill_holes_equals_scipy(rank):
    """The labelling fill gives scipy's flood fill voxel for voxel: default, full and in-plane connectivity,
    holes touching the border along an axis the structure does not reach, empty and full masks."""
    rng = np.random.default_rng(rank)
    structures = [None, ndimage.generate_binary_structure(rank, rank),
                  ndimage.generate_binary_structure(2, 1)[:, :, None] if rank == 3 else np.ones((3, 1), bool)]
    masks = [np.zeros((5,) * rank, bool), np.ones((5,) * rank, bool)]
    for _ in range(60):
        shape = tuple(int(n) for n in rng.integers(2, 16, size=rank))
        masks.append(ndimage.binary_dilation(rng.random(shape) < rng.uniform(0.03, 0.4)))
    ring = np.zeros((7, 7, 3) if rank == 3 else (7, 7), bool)
    ring[1:6, 1:6] = True
    ring[2:5, 2:5] = False  # in 3D a tube: enclosed in every axial slice but open at both z faces, so only
    masks.append(ring)      # the in-plane structure fills it
    filled = 0
    for mask in masks:
        for structure in structures:
            ours = fill_holes(mask, structure)
            assert np.array_equal(ours, ndimage.binary_fill_holes(mask, structure))
            filled += int(ours.sum() > mask.sum())
    assert filled > 20  # the random masks do have holes
    with pytest.raises(ValueError, match="1 or 3 along each axis"):
        fill_holes(masks[2], np.ones((5,) * rank, bool))


def test_bone_density_orders_phantoms(labelled):
    measured = [m.bone_density_hu for m in labelled]
    requested = [a["bone_density_hu"] for a in FOUR]
    assert spearmanr(measured, requested)[0] > 0.9, (measured, requested)
    for m, r in zip(labelled, requested):
        assert abs(m.bone_density_hu - r) < 80, (m.bone_density_hu, r)
        assert set(m.bone_density_levels_hu) == {"L1", "L2", "L3"}


def test_l3_slice_areas(labelled):
    for m in labelled:
        assert 50 < m.l3_muscle_area_cm2 < 350
        assert m.l3_sat_area_cm2 > 0 and m.l3_vat_area_cm2 > 0
        assert 20 < m.l3_muscle_hu < 100  # phantom muscle 30..55 HU by age, plus partial volume with bone
    lean, fat = labelled[3], labelled[2]
    assert lean.l3_sat_area_cm2 < fat.l3_sat_area_cm2


def test_abdomen_only_scan(phantoms, labelled):
    ph, full = phantoms[0], labelled[0]
    lo, _ = _z_range(ph, "vertebrae_L5")
    _, hi = _z_range(ph, "vertebrae_T11")
    ct, labels = _crop(ph, lo, hi + 1)
    for m in (measure(ct, labels), measure(ct, backend="threshold")):
        cov = m.coverage
        assert not cov["whole_body"] and cov["cut_superior"] and cov["cut_inferior"]
        for name in WHOLE_BODY_FIELDS:
            assert getattr(m, name) is None
            # the threshold backend's muscle fields give the more basic reason: no muscle is identified
            why = "identifies muscle" if m.backend == "threshold" and name in MUSCLE_FIELDS else "partial scan"
            assert why in m.not_measurable[name]
        assert any("whole-body quantities" in w for w in m.warnings)
        assert 0 < m.scan_volume_l["body"] < 0.5 * full.body_volume_l
    m = measure(ct, labels)
    assert m.coverage["regions"]["abdomen"] and m.coverage["regions"]["head_neck"] is False
    assert m.bone_density_hu == pytest.approx(full.bone_density_hu, abs=1e-6)
    assert m.l3_muscle_area_cm2 == pytest.approx(full.l3_muscle_area_cm2)


def test_chest_only_scan(phantoms):
    ph = phantoms[1]
    lo, _ = _z_range(ph, "vertebrae_T6")  # above the liver dome
    _, hi = _z_range(ph, "vertebrae_T1")
    ct, labels = _crop(ph, lo, hi + 1)
    m = measure(ct, labels)
    assert m.coverage["regions"]["thorax"] and not m.coverage["regions"]["abdomen"]
    assert m.mass_kg is None and m.bfp_pct is None and m.height_cm is None
    assert m.bone_density_hu is None and "L1 is not in the segmentation" in m.not_measurable["bone_density_hu"]
    assert m.scan_volume_l["bone"] > 0


def test_legs_cut_off_is_not_whole_body(phantoms):
    ph = phantoms[0]
    knee, _ = _z_range(ph, "patella_left", "patella_right")
    ct, labels = _crop(ph, knee, ph.ct.shape[2])
    m = measure(ct, labels)
    assert m.coverage["cut_inferior"] and not m.coverage["cut_superior"]
    assert m.mass_kg is None and "inferior (feet) end" in m.not_measurable["mass_kg"]


def test_height_field(phantoms, labelled, monkeypatch):
    import importlib.util
    import sys

    if importlib.util.find_spec("vctcore.measure.height") is not None:  # written alongside this module
        for m, a in zip(labelled, FOUR):
            assert m.height_cm is not None, m.not_measurable.get("height_cm")
            assert abs(m.height_cm - a["height_cm"]) < 3.0, (m.height_cm, a["height_cm"])
            assert m.height_segments_cm and "height_cm" not in m.not_measurable
    monkeypatch.setitem(sys.modules, "vctcore.measure.height", None)  # import fails
    m = measure(phantoms[0].ct, phantoms[0].labels)
    assert m.height_cm is None and m.not_measurable["height_cm"] == "height module not installed"
    assert m.mass_kg is not None


def test_record_serialises(labelled):
    m = labelled[0]
    d = json.loads(m.to_json())
    for key in ("mass_kg", "bfp_pct", "mmp_pct", "bone_density_hu", "body_volume_l", "height_cm", "fat_kg",
                "muscle_kg", "bone_kg", "coverage", "backend", "warnings", "not_measurable"):
        assert key in d
    assert d["mass_kg"] == pytest.approx(m.mass_kg, abs=1e-4)
    row = m.to_row()
    assert all(not isinstance(v, (dict, list)) for v in row.values())
    assert row["whole_body"] is True and "abdomen" in row["regions_covered"]
    assert "bone_density_levels_hu.L2" in row
    assert "mass" in m.table() and "bone density" in m.table()
    assert isinstance(m, Measurements)


def test_numpy_path_equals_compiled_path(phantoms, monkeypatch):
    ph = phantoms[2]
    results = []
    for compiled in (kernels.HAVE_NUMBA, False):
        monkeypatch.setattr(kernels, "HAVE_NUMBA", compiled)
        results.append([measure(ph.ct, seg, height=False).to_dict() for seg in (ph.labels, ph.seg, None)])
    for a, b in zip(*results):
        a.pop("seconds"), b.pop("seconds")
        assert a == b


def test_value_only_label_maps_are_identified(phantoms):
    ph = phantoms[3]
    generic = lambda lm: LabelMap(data=lm.data, affine=lm.affine,  # noqa: E731 - as read_labels without names
                                  names={int(v): f"label_{int(v)}" for v in np.unique(lm.data) if v})
    assert measure(ph.ct, generic(ph.labels), height=False).vocabulary == "fine"
    assert measure(ph.ct, generic(ph.seg), height=False).vocabulary == "merged"
    m = measure(ph.ct, generic(ph.seg), seg_format="fine", height=False)
    assert m.vocabulary == "fine"  # forced: the user said so


def test_empty_body_and_bad_input_raise():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    air = -1000 + np.random.default_rng(0).normal(0, 10, (40, 40, 30)).astype(np.float32)
    with pytest.raises(MeasureError, match="no body in the CT"):
        measure(CTVolume(data=air, affine=affine))
    with pytest.raises(MeasureError, match="Hounsfield"):
        measure(CTVolume(data=np.random.default_rng(0).random((20, 20, 20), dtype=np.float32), affine=affine))
    body = air.copy()
    body[10:30, 10:30, :] = 40.0
    with pytest.raises(MeasureError, match="unknown backend"):
        measure(CTVolume(data=body, affine=affine), backend="magic")
    with pytest.raises(MeasureError, match="needs a segmentation"):
        measure(CTVolume(data=body, affine=affine), backend="labels")
    other = LabelMap(data=np.zeros((40, 40, 29), np.uint8), affine=affine, names={})
    with pytest.raises(MeasureError, match="does not match the CT grid"):
        measure(CTVolume(data=body, affine=affine), other)


def test_totalsegmentator_without_weights_fails_fast(tmp_path, monkeypatch):
    import socket
    import time

    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path / "ts"))
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)

    def no_network(*args, **kwargs):
        raise AssertionError("the totalsegmentator backend tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    ct = CTVolume(data=np.full((30, 30, 30), -1000.0, np.float32) + np.eye(30)[:, :, None] * 1040,
                  affine=np.diag([3.0, 3.0, 3.0, 1.0]))
    t = time.perf_counter()
    with pytest.raises(MeasureError, match=r"TotalSegmentator weights not found in .*ts.*download on first use"):
        measure(ct, backend="totalsegmentator")
    assert time.perf_counter() - t < 10.0


def test_fine_label_value_for_unspecified_bone_is_not_a_fine_label():
    from vctcore.measure.composition import UNSPECIFIED_BONE

    assert UNSPECIFIED_BONE not in FINE_LABEL_NAMES and max(FINE_LABELS.values()) < UNSPECIFIED_BONE


@pytest.mark.slow
def test_accuracy_20_phantoms():
    """20 reference-population phantoms, supine and standing: labels exact, threshold within its bias (and
    no MMP: it identifies no muscle)."""
    rows = supported_rows(PopulationSpec.from_yaml(REFERENCE).sample(60, seed=7))
    attrs = [{k: row[k] for k in REQUIRED} for _, row in rows.iterrows()]
    measured, requested = [], []
    for i, a in enumerate(attrs):
        if len(measured) == 20:
            break
        try:
            ph = build_phantom(a, seed=i, pose="standing" if i % 3 == 0 else "supine")
        except ValueError:  # e.g. arms wider than the grid: not a measurement question
            continue
        m = measure(ph.ct, ph.labels)
        assert abs(m.mass_kg - a["weight_kg"]) / a["weight_kg"] < 0.03
        assert abs(m.bfp_pct - a["bfp_pct"]) < 1.5 and abs(m.mmp_pct - a["mmp_pct"]) < 1.5
        t = measure(ph.ct, backend="threshold")
        assert abs(t.mass_kg - a["weight_kg"]) / a["weight_kg"] < 0.03
        assert abs(t.bfp_pct - a["bfp_pct"]) < 4.0 and t.mmp_pct is None
        assert 1.1 < t.soft_tissue_kg / m.muscle_kg < 2.0
        measured.append(m.bone_density_hu)
        requested.append(a["bone_density_hu"])
    assert len(measured) == 20
    assert spearmanr(measured, requested)[0] > 0.9
