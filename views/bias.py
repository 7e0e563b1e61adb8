"""3 · Bias explorer: a finished trial's verdicts, the paper's Tables 1-4, error plots with the split
boundary, importances and SHAP, and the subgroup scan whose slices open their patients and their CT."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from views._slices import slice_views, view_controls
from vctcore.trial import figures
from vctcore.trial.attribution import FEATURES
from vctcore.trial.catalog import list_trials
from vctcore.trial.result import TrialResult, TrialResultError
from vctcore.volume import read_ct, read_labels

VERDICT_MARKS = {"acceptable": "acceptable", "significant": "significant degradation",
                 "inconclusive": "inconclusive"}
NUM = st.column_config.NumberColumn


@st.cache_data(max_entries=4, show_spinner="Reading the trial…")
def load(path: str, mtime: float) -> TrialResult:  # noqa: ARG001 (mtime: reread a rewritten trial)
    return TrialResult.load(path)


@st.cache_data(max_entries=4, show_spinner="Reading the patient…")
def load_patient(path: str) -> dict[str, Any]:
    ct = read_ct(f"{path}/ct.nii.gz")
    seg = read_labels(f"{path}/seg.nii.gz")
    return {"ct": ct.data, "seg": seg.data, "spacing_mm": tuple(float(s) for s in ct.spacing_mm)}


def verdict_label(v: str) -> str:
    key = "significant" if str(v).startswith("significant") else str(v)
    return VERDICT_MARKS.get(key, str(v))


def table(df: pd.DataFrame, key: str, **kw) -> Any:
    """A sortable table with numbers at 3 significant places."""
    cfg = {c: NUM(format="%.3g") for c in df.columns if pd.api.types.is_float_dtype(df[c])}
    return st.dataframe(df, hide_index=True, width="stretch", column_config=cfg, key=key, **kw)


st.title("3 · Bias explorer")
trials = [t for t in list_trials() if t.finished]
if not trials:
    st.info("No finished trials yet: start one on the **2 · Trial** page.")
    st.stop()
names = [t.name for t in trials]
if st.session_state.get("bias_trial") not in names:
    st.session_state["bias_trial"] = names[0]
name = st.selectbox("Trial", names, key="bias_trial")
info = next(t for t in trials if t.name == name)
try:
    result = load(str(info.path), (info.path / "trial.json").stat().st_mtime)
except TrialResultError as err:
    st.error(str(err))
    st.stop()
s = result.summary
task = s.get("task", "")
pp = figures.error_unit(result)
st.caption(f"{s.get('design')} trial of {s['provenance']['model'].get('name')} predicting {task}; errors are "
           f"absolute errors in {pp}. {s.get('description', '')}")
for w in s.get("warnings", []):
    st.warning(w)

st.subheader("Verdicts")
verdicts = pd.DataFrame(s.get("verdicts", []))
if not verdicts.empty:
    shown = verdicts.assign(verdict=verdicts["verdict"].map(verdict_label))
    cols = [c for c in ("population", "sample_type", "n", "mae", "mae_low", "mae_high", "verdict") if c in shown]
    table(shown[cols].rename(columns={"mae": f"MAE ({pp})", "mae_low": "CI low", "mae_high": "CI high"}), "bias_verdicts")
if "degraded_populations" in s:
    st.markdown("**Degraded against the reference:** " + (", ".join(s["degraded_populations"]) or "none"))
for stype, feats in (s.get("error_drivers") or {}).items():
    st.markdown(f"**Attributes driving the error ({stype}):** {', '.join(feats)}")

tabs = st.tabs(["Tables", "Errors", "Attribution", "Subgroups"])
with tabs[0]:
    for key, title in (("populations", "Populations against the reference"),
                       ("table1", "Table 1 — MAE with 95% CIs, Z and p against real"),
                       ("table2", "Table 2 — correlation of error with each attribute, real against other"),
                       ("table3", "Table 3 — random-forest regression of |error|: cross-validated MAE"),
                       ("table4", "Table 4 — feature importances (mean and bootstrap SD)"),
                       ("importance_correlation", "Importance correlation with real"),
                       ("faithful_twins", "Generated twins against their real sources: signed error of the twins "
                                          "within the tolerance of their source's BFP and MMP, and the gap with its CI"),
                       ("twin_drift", "Twin drift: generated image minus its real source, per measured attribute"),
                       ("split", "Split composition")):
        t = result.tables.get(key)
        if t is not None and not t.empty:
            st.markdown(f"**{title}**")
            table(t, f"bias_t_{key}")
    if s.get("importance_weighting"):
        st.caption(f"Importance weighting: {s['importance_weighting']}")

with tabs[1]:
    st.plotly_chart(figures.error_distributions(result), key="bias_dist", width="stretch")
    stypes = list(dict.fromkeys(result.predictions["sample_type"]))
    if s.get("split"):
        st.markdown(f"**Split boundary:** {s['split'].get('rule', '')}")
        stype = st.radio("Sample type", stypes, horizontal=True, key="bias_plane_type")
        st.plotly_chart(figures.split_plane(result, stype), key="bias_plane", width="stretch")
    attrs = [f for f in FEATURES if f in result.predictions.columns]
    attr = st.selectbox("Error against", attrs, key="bias_attr",
                        index=attrs.index(s["split"]["x"]) if s.get("split") and s["split"].get("x") in attrs else 0)
    st.plotly_chart(figures.error_vs_attribute(result, attr), key="bias_vs", width="stretch")

with tabs[2]:
    kind = st.radio("Importance", ["permutation", "impurity"], horizontal=True, key="bias_imp_kind")
    st.plotly_chart(figures.importance_bars(result, kind), key="bias_imp", width="stretch")
    shap = result.tables.get("shap")
    if shap is None or shap.empty:
        st.info("This trial has no SHAP values (too few patients for the forest).")
    else:
        stype = st.radio("SHAP of", list(dict.fromkeys(shap["sample_type"])), horizontal=True, key="bias_shap_type")
        st.plotly_chart(figures.shap_summary(result, stype), key="bias_shap", width="stretch")
        feat = st.selectbox("Dependence on", [f for f in FEATURES if f in shap.columns], key="bias_dep")
        st.plotly_chart(figures.shap_dependence(result, stype, feat), key="bias_dep_fig", width="stretch")

with tabs[3]:
    scan = result.tables.get("subgroups")
    if scan is None or scan.empty:
        st.info("No subgroup scan in this trial (too few patients per slice).")
    else:
        st.caption("Slices over single attributes and pairs of binned attributes, ranked by effect (slice MAE − "
                   "rest); p adjusted by Benjamini-Hochberg. Select a slice to list its patients.")
        cols = [c for c in ("sample_type", "slice", "n", "mae", "mae_low", "mae_high", "mae_rest", "effect", "p",
                            "p_adjusted", "significant") if c in scan]
        picked = table(scan[cols], "bias_scan", on_select="rerun", selection_mode="single-row")
        rows = picked.selection.rows if picked is not None else []
        if rows:
            row = scan.iloc[rows[0]]
            members = str(row.get("members", "")).split(";")
            p = result.predictions
            members_df = p[(p["sample_type"] == row["sample_type"]) & p["patient_id"].isin(members)]
            st.markdown(f"**{row['slice']}** ({row['sample_type']}, {len(members_df)} patients)")
            show = [c for c in ("patient_id", "population", "y_true", "y_pred", "abs_error", *FEATURES) if c in members_df]
            pick = table(members_df[show], "bias_members", on_select="rerun", selection_mode="single-row")
            sel = pick.selection.rows if pick is not None else []
            if sel and "image_dir" in members_df:
                patient = members_df.iloc[sel[0]]
                path = Path(str(patient["image_dir"]))
                if (path / "ct.nii.gz").is_file():
                    st.markdown(f"**CT of {patient['patient_id']}** ({patient['sample_type']}, error "
                                f"{patient['abs_error']:.2f} {pp})")
                    level, width, opacity = view_controls("bias")
                    vol = load_patient(str(path))
                    slice_views("bias", vol["ct"], vol["seg"], vol["spacing_mm"], str(path), level, width, opacity)
                else:
                    st.warning(f"The image of {patient['patient_id']} is no longer in the patient store ({path}).")
            elif sel:
                st.info("This trial was written before image paths were recorded; rerun it to open its CTs.")
