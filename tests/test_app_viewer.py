"""The Viewer page through streamlit.testing with real vctcore calls: a workspace holding one default-grid
phantom (slices, per-class toggles, 3D organ surfaces, requested vs measured, the cohort's own measurement
table), and counterfactual pairs from an untrained generator (free-form, and a synthetic cohort's patient
made again)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app_pages import open_page
from untrained_generator import write_untrained_generator
from vctcore.cohort import CohortWriter
from vctcore.phantom.builder import build_phantom
from vctcore.render import legend_entries

ATTRS = {"sex": "M", "age_years": 45, "height_cm": 180, "weight_kg": 85, "bfp_pct": 24, "mmp_pct": 38,
         "bone_density_hu": 170}


@pytest.fixture(scope="module")
def phantom_cohort(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A cohort of one default-grid phantom: (its folder, the merged label array)."""
    root = tmp_path_factory.mktemp("viewer") / "phantoms"
    ph = build_phantom(ATTRS, seed=0)
    writer = CohortWriter(root, {"maker": "vctcore.phantom", "seed": 0, "n": 1})
    writer.add("P0000", ct=ph.ct, seg=ph.seg, labels=ph.labels)
    writer.write_attributes(pd.DataFrame([{"id": "P0000", **ATTRS}]))
    return root, ph.seg.data


@pytest.fixture(scope="module")
def untrained(tmp_path_factory) -> Path:
    return write_untrained_generator(tmp_path_factory.mktemp("generator") / "untrained")


@pytest.fixture
def workspace(tmp_path, phantom_cohort, untrained, monkeypatch) -> Path:
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(phantom_cohort[0], ws / "cohorts" / "phantoms")
    monkeypatch.setenv("VCT_WORKSPACE", str(ws))
    monkeypatch.setenv("VCT_GENERATOR", str(untrained))
    return ws


def _meshes(at) -> list[dict]:
    for chart in at.get("plotly_chart"):
        data = json.loads(chart.proto.spec)["data"]
        if data and all(t["type"] == "mesh3d" for t in data):
            return data
    raise AssertionError("no 3D figure on the page")


def _frame(at, column: str) -> pd.DataFrame:
    for df in at.dataframe:
        if column in df.value.columns:
            return df.value
    raise AssertionError(f"no table with a {column!r} column")


def test_a_phantom_patient_opens_in_slices_and_3d_and_is_measured(workspace, phantom_cohort):
    seg = phantom_cohort[1]
    at = open_page("views/viewer.py")
    assert at.title[0].value == "Viewer"
    assert len(at.get("image")) == 3
    organs = [name for _, name, _ in legend_entries(np.unique(seg))]
    meshes = _meshes(at)
    assert [m["name"] for m in meshes] == [*organs, "body surface"]
    assert all(m.get("opacity", 1) == 1 for m in meshes[:-1]) and meshes[-1]["opacity"] < 1
    # per-class toggles: hiding the liver takes it out of the legend under the slices
    pills = at.pills(key="vw_classes")
    assert set(pills.value) == set(int(v) for v in np.unique(seg) if v)
    pills.set_value([v for v in pills.value if v != 4]).run()
    assert not at.exception, at.exception
    legend = next(m.value for m in at.markdown if "border-radius:2px" in m.value)
    assert "liver" not in legend and "spleen" in legend
    # no measurement table in the cohort: measured on request
    assert any("no measurement table" in i.value for i in at.info)
    at.button(key="vw_measure").click().run()
    assert not at.exception, at.exception
    table = _frame(at, "requested").set_index("quantity")
    assert list(table.columns) == ["unit", "requested", "measured", "difference"]
    assert table.loc["Weight", "requested"] == 85
    assert abs(table.loc["Weight", "measured"] - 85) < 0.05 * 85
    assert table.loc["Weight", "difference"] == pytest.approx(table.loc["Weight", "measured"] - 85)
    assert abs(table.loc["Height", "difference"]) < 10
    assert np.isnan(table.loc["Body volume", "requested"]) and table.loc["Body volume", "measured"] > 50


def test_the_cohorts_measurement_table_is_used_when_there_is_one(workspace):
    pd.DataFrame([{"id": "P0000", "backend": "labels", "mass_kg": 84.0, "height_cm": 181.5, "bfp_pct": 23.0,
                   "mmp_pct": 37.0, "bone_density_hu": 168.0, "body_volume_l": 88.0, "error": ""}]).to_csv(
        workspace / "cohorts" / "phantoms" / "measurements.csv", index=False)
    at = open_page("views/viewer.py")
    assert "vw_measure" not in [b.key for b in at.button]
    table = _frame(at, "requested").set_index("quantity")
    assert table.loc["Weight", "measured"] == 84.0 and table.loc["Weight", "difference"] == -1.0
    assert table.loc["Height", "difference"] == 1.5
    assert any("measurement table" in c.value and "labels" in c.value for c in at.caption)


def test_a_free_form_counterfactual_pair_shows_both_images_the_difference_and_the_changes(workspace):
    at = open_page("views/viewer.py")
    assert at.radio(key="vw_cf_mode").options == ["Free-form"]  # a phantom cohort: no patient to remake
    at.number_input(key="vw_cf_weight_kg").set_value(70.0)
    at.selectbox(key="vw_cf_attr").set_value("weight_kg")
    at.number_input(key="vw_cf_to_weight_kg").set_value(110.0)
    at.button(key="vw_cf_go").click().run()
    assert not at.exception, at.exception
    assert len(at.get("image")) == 3 + 3  # the slices, then before, after and their difference
    captions = [c for image in at.get("image") for c in image.captions]
    assert captions[-3:] == ["Weight 70.0 kg", "Weight 110.0 kg", "Difference, after − before"]
    changes = _frame(at, "change")
    assert {"Weight", "Height", "Body fat", "Muscle", "Bone density", "Body volume"} <= set(changes["quantity"])
    results = at.session_state["vw_cf_results"]
    (result,) = results.values()
    assert np.abs(result["diff_hu"]).max() > 0  # the weight reached the image


def test_a_synthetic_patient_is_made_again_as_the_pair_before_image(workspace, untrained):
    from vctcore.synthetic_cohort import generate_cohort
    from vctcore.generator import Generator
    from vctcore.volume import read_ct

    rows = pd.DataFrame([{"sex": "F", "age_years": 60, "height_cm": 165, "weight_kg": 60},
                         {"sex": "M", "age_years": 40, "height_cm": 185, "weight_kg": 90}])
    generate_cohort(Generator.from_pretrained(untrained, device="cpu"), rows, seed=7,
                    out=workspace / "cohorts" / "synth")
    at = open_page("views/viewer.py")
    at.selectbox(key="vw_cohort").set_value("synth").run()
    at.selectbox(key="vw_patient").set_value("S0001").run()
    assert at.radio(key="vw_cf_mode").value == "This patient"
    at.selectbox(key="vw_cf_attr").set_value("height_cm").run()
    at.button(key="vw_cf_go").click().run()
    assert not at.exception, at.exception
    (result,) = at.session_state["vw_cf_results"].values()
    stored = read_ct(workspace / "cohorts" / "synth" / "patients" / "S0001" / "ct.nii.gz").data
    assert np.abs(result["before"][0] - stored).max() <= 0.5 + 1e-3  # the CT is stored as whole HU
    assert np.abs(result["diff_hu"]).max() > 0
