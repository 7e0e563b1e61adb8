"""Cohort browser: open any cohort of the workspace (phantom or generated) and browse its patients."""
from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from views._slices import slice_views, view_controls
from vctcore.cohort import read_attributes
from vctcore.volume import read_ct, read_labels
from vctcore.workspace import list_cohorts, workspace_root

MAKERS = {"vctcore.phantom": "digital-human phantoms", "vctcore.generator": "synthetic (generator)"}


@st.cache_data(max_entries=4, show_spinner="Reading the patient…")
def load_patient(path: str) -> dict[str, Any]:
    ct = read_ct(f"{path}/ct.nii.gz")
    seg = read_labels(f"{path}/seg.nii.gz")
    return {"ct": ct.data, "seg": seg.data, "spacing_mm": tuple(float(s) for s in ct.spacing_mm)}


st.title("Cohorts")
cohorts = list_cohorts()
if not cohorts:
    st.info(f"No cohorts in {workspace_root() / 'cohorts'} yet. Write one with `vct phantom --n 20 --out "
            f"{workspace_root() / 'cohorts' / 'phantoms'}` or `vct generate --n 20 --out "
            f"{workspace_root() / 'cohorts' / 'synthetic'}`.")
    st.stop()

by_name = {c.name: c for c in cohorts}
left, right = st.columns([1.2, 3.8], gap="large")
with left, st.container(border=True):
    name = st.selectbox("Cohort", list(by_name), key="co_cohort",
                        format_func=lambda n: f"{n} — {by_name[n].n_patients} patients, "
                                              f"{MAKERS.get(by_name[n].maker, by_name[n].maker)}")
    info = by_name[name]
    table = read_attributes(info.path)
    ids = [pid for pid in table["id"].astype(str) if (info.path / "patients" / pid / "ct.nii.gz").exists()]
    if not ids:
        st.warning("This cohort has no finished patients yet.")
        st.stop()
    pid = st.selectbox("Patient", ids, key="co_patient")
    row = table.set_index(table["id"].astype(str)).loc[pid].drop(labels=["id"], errors="ignore")
    st.markdown("**Attributes**")
    st.dataframe(pd.DataFrame({"value": row.astype(str)}), width="stretch")
    prov = info.provenance
    details = {k: prov[k] for k in ("maker", "seed", "steps", "guidance_scale", "device", "n") if k in prov}
    if "checkpoint_sha256" in prov:
        details["diffusion sha256"] = str(prov["checkpoint_sha256"].get("diffusion.safetensors", ""))[:16] + "…"
    with st.expander("Provenance"):
        st.json(details)

with right:
    level, width, opacity = view_controls("co")
    patient = load_patient(str(info.path / "patients" / pid))
    slice_views("co", patient["ct"], patient["seg"], patient["spacing_mm"], (name, pid), level, width, opacity)
