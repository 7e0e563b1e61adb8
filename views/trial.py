"""2 · Trial: start a virtual clinical trial (a shipped configuration, or an audit built from choices) as a
background job; follow it live; list finished trials with their verdicts."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st
import yaml

from views._jobs import live_job_panel
from vctcore.downstream.registry import list_models
from vctcore.jobs import JobError, list_jobs
from vctcore.population import SpecError
from vctcore.trial.catalog import (SHIPPED_TRIALS, audit_config, list_trials, population, seconds_per_patient,
                                   shipped_configs, shipped_populations, start_trial, trials_root, write_config)
from vctcore.trial.config import TrialConfigError
from vctcore.trial.populations import PopulationError

ERRORS = (TrialConfigError, JobError, PopulationError, SpecError, OSError)


def _population_input(key: str, label: str, default_spec: int = 0) -> tuple[dict, int | None]:
    """Widgets for one population: a shipped spec sampled N rows, or a CSV of attribute rows (shipped or
    uploaded). Returns (population entry without its name, number of rows when known)."""
    st.markdown(f"**{label}**")
    kind = st.radio("Source", ["population spec", "CSV of patients"], key=f"{key}_kind", horizontal=True,
                    label_visibility="collapsed")
    if kind == "population spec":
        specs = shipped_populations()
        spec = st.selectbox("Spec", specs, index=min(default_spec, len(specs) - 1), key=f"{key}_spec",
                            format_func=lambda p: p.stem)
        n = st.number_input("Patients (N)", 2, 2000, 24, key=f"{key}_n")
        return {"spec": spec, "n": int(n)}, int(n)
    csvs = sorted(SHIPPED_TRIALS.glob("*.csv"))
    upload = st.file_uploader("CSV (sex, age_years, height_cm, weight_kg; id optional)", type=["csv"], key=f"{key}_up")
    if upload is not None:
        path = trials_root() / "populations" / upload.name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_bytes() != upload.getvalue():  # not again on every rerun
            path.write_bytes(upload.getvalue())
    else:
        path = st.selectbox("Shipped CSV", csvs, key=f"{key}_csv", format_func=lambda p: p.name)
    n = st.number_input("First N rows (0: all)", 0, 100000, 0, key=f"{key}_csv_n")
    return {"csv": path, **({"n": int(n)} if n else {})}, (int(n) or None)


st.title("2 · Trial")
st.caption("A trial synthesises each population, measures every synthetic patient's ground truth from its image, "
           "runs the model under test and compares the populations. It runs as a background job: you can leave "
           "this page, reload or restart the app; a cancelled or failed trial resumes where it stopped.")

start, runs = st.columns([1.1, 1.4], gap="large")
with start:
    st.subheader("Start a trial")
    how = st.radio("From", ["an audit of my model", "a shipped configuration"], key="tr_how", horizontal=True)
    if how == "a shipped configuration":
        cfg_path = st.selectbox("Configuration", shipped_configs(), key="tr_shipped", format_func=lambda p: p.stem)
        with st.expander("Configuration file", expanded=False):
            st.code(Path(cfg_path).read_text(), language="yaml")
        if st.button("Start trial", key="tr_start_shipped", type="primary"):
            try:
                start_trial(Path(cfg_path))
                st.rerun()
            except ERRORS as err:
                st.error(str(err))
    else:
        name = st.text_input("Trial name", "my_audit", key="tr_name")
        models = {f"{m.source}/{m.name}": m for m in list_models()}
        model_key = st.selectbox("Model under test", list(models), key="tr_model")
        ref, n_ref = _population_input("tr_ref", "Reference population (where the model was validated)")
        n_targets = st.number_input("Target populations", 1, 4, 1, key="tr_n_targets")
        targets, n_rows = [], [n_ref]
        for k in range(int(n_targets)):
            tname = st.text_input(f"Target {k + 1} name", f"target_{k + 1}", key=f"tr_t{k}_name")
            entry, n_t = _population_input(f"tr_t{k}", f"Target {k + 1}")
            targets.append(population(tname, **entry))
            n_rows.append(n_t)
        seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="tr_seed")
        with st.expander("Advanced"):
            steps = st.number_input("Sampler steps (0: the generator's default)", 0, 200, 0, key="tr_steps")
            oversample = st.number_input("Synthetic patients per row", 1, 10, 1, key="tr_oversample")
            n_boot = st.number_input("Bootstrap resamples", 100, 20000, 2000, step=100, key="tr_boot")
            min_slice = st.number_input("Smallest subgroup slice", 2, 500, 8, key="tr_min_slice")
        rate = seconds_per_patient()
        if rate is not None and all(n is not None for n in n_rows):
            total = sum(n_rows) * int(oversample)
            st.caption(f"{total} synthetic patients; at {rate:.0f} s each on this machine (the median of the last "
                       f"ones made) about {total * rate / 60:.0f} min, less for patients already in the store.")
        if st.button("Start trial", key="tr_start_audit", type="primary"):
            try:
                cfg = audit_config(name, model=models[model_key].path, reference=population("reference", **ref),
                                   targets=targets, seed=int(seed), oversample=int(oversample),
                                   steps=int(steps) or None, n_boot=int(n_boot), min_slice=int(min_slice))
                start_trial(write_config(cfg))
                st.rerun()
            except ERRORS as err:
                st.error(str(err))

with runs:
    st.subheader("Trials")
    jobs = list_jobs(kind="trial")
    for job in [j for j in jobs if j.active][:3]:
        live_job_panel(job, f"tr_job_{job.id}")
    recent = [j for j in jobs if not j.active and j.status != "done"][:2]
    for job in recent:
        live_job_panel(job, f"tr_job_{job.id}")
    trials = [t for t in list_trials() if t.finished]
    if not trials:
        st.info("No finished trials yet.")
    else:
        rows = []
        for t in trials:
            s = t.summary or {}
            rows.append({"trial": t.name, "design": t.design, "task": s.get("task"),
                         "finished (UTC)": str(s.get("provenance", {}).get("finished_utc", ""))[:19],
                         "verdicts": t.verdict_line()})
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="tr_finished")
        pick = st.selectbox("Explore", [t.name for t in trials], key="tr_pick")
        if st.button("Open in the bias explorer", key="tr_open"):
            st.session_state["bias_trial"] = pick
            st.switch_page("views/bias.py")
        with st.expander("Configuration of the selected trial"):
            st.code(yaml.safe_dump(next(t for t in trials if t.name == pick).summary.get("config", {}),
                                   sort_keys=False), language="yaml")
