"""4 · Report: build a finished trial's PDF bias report (a `vct report` job), preview its pages, download it."""
from __future__ import annotations

import streamlit as st

from views._jobs import live_job_panel
from vctcore.jobs import JobError, list_jobs, start_job
from vctcore.report import PreviewError, render_pages_png
from vctcore.trial.catalog import list_trials
from vctcore.workspace import workspace_root


@st.cache_data(max_entries=4, show_spinner="Rendering the pages…")
def previews(pdf: str, mtime: float) -> list[bytes]:  # noqa: ARG001 (mtime: re-render a rebuilt report)
    return render_pages_png(pdf, dpi=70)


st.title("4 · Report")
st.caption("The bias report an auditor files: verdicts in plain words, the paper-style tables, figures, "
           "limitations and the full provenance to rerun the trial exactly. It is built from the trial directory "
           "alone and computes no new numbers.")
trials = [t for t in list_trials() if t.finished]
if not trials:
    st.info("No finished trials yet: start one on the **2 · Trial** page.")
    st.stop()
names = [t.name for t in trials]
default = st.session_state.get("bias_trial")
name = st.selectbox("Trial", names, index=names.index(default) if default in names else 0, key="rep_trial")
info = next(t for t in trials if t.name == name)
pdf = workspace_root() / "reports" / f"{name}.pdf"
stale = pdf.is_file() and pdf.stat().st_mtime < (info.path / "trial.json").stat().st_mtime
jobs = [j for j in list_jobs(kind="report") if j.output == str(pdf.resolve())]
active = bool(jobs and jobs[0].active)
label = "Rebuild the report" if pdf.is_file() else "Build the report"
if st.button(label, key="rep_build", type="primary", disabled=active):
    try:
        pdf.parent.mkdir(parents=True, exist_ok=True)
        start_job(["report", str(info.path), "--out", str(pdf)], kind="report", title=f"report of {name}", output=pdf)
    except JobError as err:
        st.error(str(err))
    st.rerun()
if jobs and (jobs[0].active or jobs[0].status != "done"):
    live_job_panel(jobs[0], "rep_job")
if pdf.is_file() and not active:
    if stale:
        st.warning("The trial changed after this report was built: rebuild it.")
    st.download_button("Download the PDF", pdf.read_bytes(), file_name=pdf.name, mime="application/pdf",
                       key="rep_download", type="primary")
    try:
        pages = previews(str(pdf), pdf.stat().st_mtime)
    except PreviewError as err:
        st.warning(f"No preview: {err}")
        pages = []
    if pages:
        st.caption(f"{len(pages)} pages")
        cols = st.columns(3)
        for k, png in enumerate(pages):
            cols[k % 3].image(png, caption=f"page {k + 1}", width="stretch")
