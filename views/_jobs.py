"""A background job's live view (status, progress bar with ETA, log, cancel / resume), shared by pages."""
from __future__ import annotations

import streamlit as st

from vctcore.jobs import Job, JobError, cancel_job, load_job, resume_job

STATUS_ICONS = {"starting": ":material/hourglass_top:", "running": ":material/hourglass_top:",
                "done": ":material/check_circle:", "failed": ":material/error:", "cancelled": ":material/stop_circle:",
                "died": ":material/warning:"}


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "estimating…"
    m, s = divmod(int(seconds), 60)
    return f"about {m} min {s:02d} s left in this stage" if m else f"about {s} s left in this stage"


def job_panel(job: Job, key: str) -> Job:
    """Show ``job`` (re-read from disk) with its progress and controls; returns the re-read job."""
    job = load_job(job.dir)
    with st.container(border=True):
        st.markdown(f"**{STATUS_ICONS.get(job.status, '')} {job.title}** — {job.status}  \n`{job.command}`")
        p = job.progress()
        if job.active and p is not None:
            st.progress(p["fraction"], text=f"{p['stage']}: {p['done']} / {p['total']} {p.get('label', '')} — "
                                            f"{_eta(p['eta_s'])}")
        elif job.active:
            st.progress(0.0, text="starting…")
        if job.error and job.status != "done":
            st.error(job.error)
        cols = st.columns(3)
        if job.active and cols[0].button("Cancel", key=f"{key}_cancel"):
            try:
                job = cancel_job(job)
            except JobError as err:
                st.error(str(err))
            st.rerun()
        if job.status in ("failed", "cancelled", "died") and cols[0].button("Resume", key=f"{key}_resume"):
            try:
                job = resume_job(job)
            except JobError as err:
                st.error(str(err))
            st.rerun()
        with st.expander("Log"):
            st.code(job.log_tail(3000) or "(empty)", language=None)
    return job


def live_job_panel(job: Job, key: str) -> None:
    """:func:`job_panel` refreshed every 2 s while the job runs; the page reruns once when it ends."""
    was_active = job.active

    @st.fragment(run_every=2.0 if was_active else None)
    def panel() -> None:
        now = job_panel(job, key)
        if was_active and not now.active:
            st.rerun()

    panel()
