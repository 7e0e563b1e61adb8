"""1 · Model under test: pick a shipped model or upload your own (ONNX or TorchScript + card), see its
card and checks, run it on a workspace cohort as a background job, see predicted against true."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from views._jobs import live_job_panel
from vctcore.cohort import read_attributes
from vctcore.downstream.card import DownstreamError
from vctcore.downstream.registry import MAX_UPLOAD_MB, import_model, list_models
from vctcore.jobs import JobError, list_jobs, start_job
from vctcore.trial.figures import LAYOUT, SAMPLE_COLOURS
from vctcore.workspace import list_cohorts, workspace_root


@st.cache_resource(max_entries=4, show_spinner="Checking the model…")
def checked(path: str, mtime: float):  # noqa: ARG001 (mtime: reload when the directory changes)
    from vctcore.downstream import load_model

    return load_model(path)


def predictions_path(model: str, cohort: str) -> Path:
    return workspace_root() / "predictions" / f"{model}__{cohort}.csv"


st.title("1 · Model under test")
st.caption("The model a trial audits: a regression model that reads a CT (HU) and returns a body-composition "
           "value. Shipped reference models, or your own as ONNX (first-class) or TorchScript with a model card. "
           "Every model is checked on load: the card's fields, the weights' sha256, the file's format, its input "
           "and output shapes against the card, and a dry run. Nothing is unpickled.")

with st.expander("Upload your own model", expanded=False):
    up_model = st.file_uploader("Model file (.onnx, .pt, .torchscript)", type=["onnx", "pt", "torchscript"],
                                key="dm_up_model")
    up_card = st.file_uploader("Model card (.yaml or .json)", type=["yaml", "yml", "json"], key="dm_up_card")
    up_name = st.text_input("Name in the workspace", key="dm_up_name", placeholder="e.g. vendor-bfp-v2")
    if st.button("Check and add", key="dm_up_add", disabled=not (up_model and up_card and up_name)):
        try:
            dest = import_model(up_name, up_model.name, up_model.getvalue(), up_card.name, up_card.getvalue(),
                                max_mb=MAX_UPLOAD_MB)
            st.session_state["dm_model"] = f"workspace/{dest.name}"
            st.success(f"Added {dest.name}: every check passed.")
        except DownstreamError as err:
            st.error(f"Not added: {err}")
    st.caption(f"Up to {MAX_UPLOAD_MB:g} MB. The card names the weights file, its sha256, the target attribute "
               "and unit, the inputs (coronal and sagittal planes, shapes), the HU window and the intended population.")

models = {f"{m.source}/{m.name}": m for m in list_models()}
if not models:
    st.info("No models yet: the shipped reference models live in checkpoints/downstream/.")
    st.stop()
key = st.selectbox("Model", list(models), key="dm_model")
entry = models[key]
try:
    model = checked(str(entry.path), entry.path.stat().st_mtime)
except DownstreamError as err:
    st.error(f"{entry.name} fails its checks: {err}")
    st.stop()
card = model.card
c1, c2, c3 = st.columns(3)
c1.metric("Predicts", f"{card.target} ({card.unit})")
c2.metric("Format", card.format)
c3.metric("Weights sha256", card.weights_sha256[:12] + "…")
st.success("Checks passed: card complete, weights match their sha256, inputs and output agree with the card, dry "
           "run succeeded.")
with st.expander("Model card"):
    st.json(card.to_dict())

st.subheader("Run on a cohort")
cohorts = {c.name: c for c in list_cohorts()}
if not cohorts:
    st.info(f"No cohorts in {workspace_root() / 'cohorts'}: write one with `vct phantom` or `vct generate`.")
    st.stop()
cohort = st.selectbox("Cohort", list(cohorts), key="dm_cohort",
                      format_func=lambda n: f"{n} — {cohorts[n].n_patients} patients")
out = predictions_path(entry.name, cohort)
running = [j for j in list_jobs(kind="predict") if j.output == str(out.resolve()) and j.active]
if st.button("Run the model", key="dm_run", disabled=bool(running)):
    try:
        start_job(["predict", "--model", str(entry.path), "--cohort", str(cohorts[cohort].path), "--out", str(out)],
                  kind="predict", title=f"{entry.name} on {cohort}", output=out)
    except JobError as err:
        st.error(str(err))
    st.rerun()
jobs = [j for j in list_jobs(kind="predict") if j.output == str(out.resolve())]
if jobs and (jobs[0].active or jobs[0].status != "done"):
    live_job_panel(jobs[0], "dm_job")

if out.is_file() and not (jobs and jobs[0].active):
    preds = pd.read_csv(out, dtype={"id": str})
    truth = read_attributes(cohorts[cohort].path)
    truth["id"] = truth["id"].astype(str)
    if card.target not in truth:
        st.warning(f"{cohort} records no {card.target}: predictions only.")
        st.dataframe(preds, hide_index=True)
        st.stop()
    df = preds.merge(truth[["id", "sex", card.target]], on="id")
    df["error"] = df["y_pred"] - df[card.target]
    mae = float(df["error"].abs().mean())
    st.caption(f"{len(df)} patients; true = the cohort's recorded {card.target} (attributes.csv). "
               f"MAE {mae:.2f} {card.unit}, mean error {df['error'].mean():+.2f} {card.unit}.")
    left, right = st.columns(2)
    lo, hi = float(min(df[card.target].min(), df["y_pred"].min())), float(max(df[card.target].max(), df["y_pred"].max()))
    fig = go.Figure()
    for sex, g in df.groupby("sex"):
        fig.add_trace(go.Scatter(x=g[card.target], y=g["y_pred"], mode="markers", name=f"sex {sex}",
                                 customdata=g[["id"]], hovertemplate="%{customdata[0]}: %{x:.1f} -> %{y:.1f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="identity", line=dict(dash="dash", color="#666")))
    fig.update_layout(title="Predicted against true", xaxis_title=f"true {card.target} ({card.unit})",
                      yaxis_title=f"predicted ({card.unit})", **LAYOUT)
    left.plotly_chart(fig, key="dm_scatter", width="stretch")
    hist = go.Figure(go.Histogram(x=df["error"], nbinsx=30, marker_color=SAMPLE_COLOURS["real"]))
    hist.update_layout(title="Error distribution", xaxis_title=f"predicted − true ({card.unit})",
                       yaxis_title="patients", **LAYOUT)
    right.plotly_chart(hist, key="dm_hist", width="stretch")
