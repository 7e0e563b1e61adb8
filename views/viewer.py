"""Viewer: open any cohort of the workspace (phantom or synthetic) and look at a patient in three planes and
in 3D, compare what was requested with what the image measures, and build counterfactual pairs.

Session state (keys ``vw_*``) is initialised in :func:`init_state`; heavy results are cached per patient
file (``st.cache_data``) or, for what a button made, per session.
"""
from __future__ import annotations

import time
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from views._counterfactual import counterfactual_section
from views._slices import class_toggles, slice_views, view_controls
from vctcore.cohort import read_attributes
from vctcore.labels import MERGED_CLASSES
from vctcore.measured import (MeasuredAttributes, cohort_measurements, from_cohort_row, measure_attributes,
                              requested_vs_measured)
from vctcore.surfaces import organ_figure
from vctcore.volume import read_ct, read_labels
from vctcore.workspace import CohortInfo, list_cohorts, workspace_root

MAKERS = {"vctcore.phantom": "digital-human phantoms", "vctcore.generator": "synthetic (generator)"}
#: session-state keys of this page -> factory of their initial value (a fresh object per session)
STATE: dict[str, Any] = {"vw_measured": dict, "vw_cf_results": dict, "vw_cf_shown": lambda: None}
NUMBER = st.column_config.NumberColumn(format="%.1f")


def init_state() -> None:
    for key, make in STATE.items():
        if key not in st.session_state:
            st.session_state[key] = make()


@st.cache_data(max_entries=4, show_spinner="Reading the patient…")
def load_patient(path: str, stamp: float) -> dict[str, Any]:
    """CT (HU) and merged classes of a patient folder; ``stamp`` (the CT file's mtime) renews the cache."""
    ct = read_ct(f"{path}/ct.nii.gz")
    seg = read_labels(f"{path}/seg.nii.gz", like=ct)
    return {"ct": ct.data, "seg": seg.data, "spacing_mm": tuple(float(s) for s in ct.spacing_mm),
            "origin_mm": tuple(float(v) for v in ct.affine[:3, 3])}


@st.cache_data(max_entries=8, show_spinner="Building the 3D organ surfaces…")
def organ_figure_for(path: str, stamp: float) -> tuple[go.Figure, float]:
    """The patient's 3D organ figure and the seconds it took to build."""
    p = load_patient(path, stamp)
    t = time.perf_counter()
    fig = organ_figure(p["seg"], p["spacing_mm"], ct=p["ct"], origin_mm=p["origin_mm"])
    return fig, time.perf_counter() - t


@st.cache_data(max_entries=32, show_spinner="Measuring the patient…")
def measure_patient(path: str, stamp: float) -> MeasuredAttributes:
    ct = read_ct(f"{path}/ct.nii.gz")
    return measure_attributes(ct, read_labels(f"{path}/seg.nii.gz", names=MERGED_CLASSES, like=ct))


def pick_patient(cohorts: list[CohortInfo]) -> tuple[CohortInfo, str, pd.Series, int] | None:
    """Cohort and patient selection with the patient's attributes and the cohort's provenance ->
    (cohort, patient id, attribute row, row index in attributes.csv), or None without a finished patient."""
    by_name = {c.name: c for c in cohorts}
    name = st.selectbox("Cohort", list(by_name), key="vw_cohort",
                        format_func=lambda n: f"{n} — {by_name[n].n_patients} patients, "
                                              f"{MAKERS.get(by_name[n].maker, by_name[n].maker)}")
    info = by_name[name]
    table = read_attributes(info.path)
    table["id"] = table["id"].astype(str)
    ids = [pid for pid in table["id"] if (info.path / "patients" / pid / "ct.nii.gz").exists()]
    if not ids:
        st.warning("This cohort has no finished patients yet.")
        return None
    pid = st.selectbox("Patient", ids, key="vw_patient")
    index = int(table.index[table["id"] == pid][0])
    row = table.loc[index].drop(labels=["id"], errors="ignore")
    st.markdown("**Attributes**")
    st.dataframe(pd.DataFrame({"value": row.astype(str)}), width="stretch")
    prov = info.provenance
    details = {k: prov[k] for k in ("maker", "seed", "steps", "guidance_scale", "sampler", "device", "n") if k in prov}
    if "checkpoint_sha256" in prov:
        details["diffusion sha256"] = str(prov["checkpoint_sha256"].get("diffusion.safetensors", ""))[:16] + "…"
    with st.expander("Provenance"):
        st.json(details)
    return info, pid, row, index


@st.fragment
def show_slices(shown: tuple[str, str], path: str, stamp: float) -> None:
    """Three planes with window presets, overlay opacity and per-class toggles (reruns on its own)."""
    patient = load_patient(path, stamp)
    level, width, opacity = view_controls("vw")
    classes = class_toggles("vw", patient["seg"], shown) if opacity > 0 else None
    slice_views("vw", patient["ct"], patient["seg"], patient["spacing_mm"], shown, level, width, opacity,
                classes=classes)


def show_3d(path: str, stamp: float) -> None:
    fig, seconds = organ_figure_for(path, stamp)
    n_organs = sum(1 for trace in fig.data if trace.opacity is None or trace.opacity == 1)
    st.plotly_chart(fig, key="vw_3d", width="stretch", config={"displaylogo": False})
    st.caption(f"{n_organs} organ surfaces (marching cubes on the segmentation) and the body surface (CT above "
               f"-500 HU), in RAS+ mm with equal scales; built in {seconds:.1f} s. Drag to rotate, scroll to zoom; "
               "click a legend entry to hide or show an organ, double-click to show it alone.")


@st.fragment
def show_measured(info: CohortInfo, pid: str, row: pd.Series, path: str, stamp: float) -> None:
    """Requested | measured | difference: the cohort's measurement table if it has one, else a button."""
    table = cohort_measurements(info.path)
    measured: MeasuredAttributes | None = None
    if table is not None and pid in table.index:
        measured = from_cohort_row(table.loc[pid])
    else:
        key = (path, stamp)
        if st.button("Measure this patient", key="vw_measure", type="primary",
                     help="Measures the CT and its segmentation as the trial measures every image (a few seconds)"):
            st.session_state["vw_measured"][key] = measure_patient(path, stamp)
        measured = st.session_state["vw_measured"].get(key)
        if measured is None:
            st.info("This cohort has no measurement table (`vct measure --cohort`); press **Measure this patient** "
                    "to measure it here.")
            return
    frame = requested_vs_measured(row.to_dict(), measured)
    st.dataframe(frame, key="vw_measured_table", hide_index=True, width="stretch",
                 column_config={c: NUMBER for c in ("requested", "measured", "difference")})
    st.caption(f"Measured: {measured.method}. Sex and age are recorded, not measured.")
    for note in measured.notes:
        st.caption(f"Note: {note}")


init_state()
st.title("Viewer")
st.caption("Any cohort of the workspace, phantom or synthetic: slices with organ labels, 3D organ surfaces, the "
           "attributes a patient was made with against what its image measures, and counterfactual pairs (the "
           "same synthetic patient with one attribute changed).")
cohorts = list_cohorts()
picked = None
if not cohorts:
    st.info(f"No cohorts in {workspace_root() / 'cohorts'} yet. Write one with `vct phantom --n 20 --out "
            f"{workspace_root() / 'cohorts' / 'phantoms'}` or `vct generate --n 20 --out "
            f"{workspace_root() / 'cohorts' / 'synthetic'}`. Free-form counterfactual pairs need no cohort.")
else:
    left, right = st.columns([1.2, 3.8], gap="large")
    with left, st.container(border=True):
        picked = pick_patient(cohorts)

if picked is None:
    counterfactual_section(None, None, None, None)
else:
    info, pid, row, index = picked
    folder = info.path / "patients" / pid
    stamp = (folder / "ct.nii.gz").stat().st_mtime
    with right:
        tab_slices, tab_3d, tab_measured, tab_cf = st.tabs(
            ["Slices", "3D organs", "Requested vs measured", "Counterfactual pair"])
        with tab_slices:
            show_slices((info.name, pid), str(folder), stamp)
        with tab_3d:
            show_3d(str(folder), stamp)
        with tab_measured:
            show_measured(info, pid, row, str(folder), stamp)
        with tab_cf:
            counterfactual_section(info, pid, row, index)
