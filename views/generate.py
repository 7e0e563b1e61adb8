"""Synthetic patients: condition the trained generator on attributes and look at one patient; or
generate a cohort from a population as a background ``vct generate`` job that outlives the page."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from views._jobs import live_job_panel
from views._slices import slice_views, view_controls
from vctcore.generate_jobs import start_generation
from vctcore.attributes import ATTRIBUTES
from vctcore.assets import default_generator
from vctcore.generator import Generator
from vctcore.models.checkpoint import CheckpointError

CHECKPOINT = default_generator()
SEXES = {"F": "female", "M": "male"}
SAMPLER_NAMES = {"dpm++": "DPM-Solver++(2M)", "ddim": "DDIM", "ddpm": "DDPM"}
INPUTS = {"age_years": (45.0, 1.0), "height_cm": (172.0, 1.0), "weight_kg": (75.0, 0.5)}


@st.cache_resource(show_spinner="Loading the generator…")
def load_generator(path: str) -> Generator:
    return Generator.from_pretrained(path, device="auto")


@st.cache_data(max_entries=8, show_spinner="Generating…")
def generate_one(path: str, attrs: dict[str, Any], seed: int, steps: int, guidance: float) -> dict[str, Any]:
    gen = load_generator(path)
    t = time.perf_counter()
    (p,) = gen.generate(pd.DataFrame([attrs]), seed=seed, steps=steps, guidance_scale=guidance)
    return {"ct": p.ct.data, "seg": p.seg.data, "spacing_mm": tuple(float(s) for s in p.ct.spacing_mm),
            "seconds": time.perf_counter() - t, "warnings": gen.support_warnings(pd.DataFrame([attrs]))}


def cohort_tab(gen: Generator) -> None:
    """Choose a population, N, seed, steps and guidance; see the device and the estimated time; start
    the generation as a job; follow running jobs; list the finished synthetic cohorts."""
    from vctcore.devices import describe_device
    from vctcore.generate_jobs import GenerateRequest, GenerateRequestError, seconds_per_patient
    from vctcore.population_design import list_specs
    from vctcore.jobs import JobError, list_jobs
    from vctcore.workspace import list_cohorts

    pops = list_specs()
    with st.container(border=True):
        label = st.selectbox("Population", list(pops), key="gen_pop",
                             help="Shipped specs, and those saved on the Population page")
        c1, c2, c3 = st.columns(3)
        n = c1.number_input("Patients", 1, 10_000, 10, key="gen_n")
        cseed = c2.number_input("Seed", 0, 2**31 - 1, 0, key="gen_cseed")
        name = c3.text_input("Cohort name", f"{Path(pops[label]).stem}_{int(n)}", key="gen_name")
        c4, c5 = st.columns(2)
        csteps = c4.number_input("Steps", 2, 100, gen.cfg.diffusion.sample_steps, key="gen_csteps")
        cguid = c5.number_input("Guidance scale", 1.0, 6.0, float(gen.cfg.diffusion.guidance_scale), 0.5,
                                key="gen_cguidance")
        cohorts = list_cohorts()
        rate = seconds_per_patient(cohorts, device=gen.device.type, checkpoint_sha256=gen.checkpoint_sha256)
        eta = (f"about {rate * n / 60:.0f} min ({rate:.1f} s per patient measured here)" if rate
               else "unknown until the first cohort finishes")
        st.caption(f"Device: {describe_device(gen.device)}. Estimated time: {eta}.")
        if st.button("Generate cohort", type="primary", key="gen_cohort_go"):
            req = GenerateRequest(population=pops[label], n=int(n), seed=int(cseed), name=name.strip(),
                                  steps=None if csteps == gen.cfg.diffusion.sample_steps else int(csteps),
                                  guidance=None if cguid == gen.cfg.diffusion.guidance_scale else float(cguid),
                                  checkpoint=CHECKPOINT)
            try:
                start_generation(req)
            except (GenerateRequestError, JobError) as err:
                st.error(str(err))
            else:
                st.rerun()
    jobs = list_jobs(kind="generate")
    for job in [j for j in jobs if j.active] + [j for j in jobs if not j.active][:3]:
        live_job_panel(job, f"gen_job_{job.id}")
    done = [c for c in cohorts if c.maker == "vctcore.generator"]
    if done:
        st.subheader("Synthetic cohorts")
        st.dataframe(pd.DataFrame([{
            "cohort": c.name, "patients": f"{c.n_patients} / {c.provenance.get('n', '?')}",
            "population": (c.provenance.get("population") or {}).get("name", ""),
            "seed": c.provenance.get("seed"), "steps": c.provenance.get("steps"),
            "guidance": c.provenance.get("guidance_scale"), "device": c.provenance.get("device"),
            "s / patient": c.provenance.get("seconds_per_patient"),
            "diffusion sha256": str((c.provenance.get("checkpoint_sha256") or {}).get("diffusion.safetensors", ""))[:12],
        } for c in done]), hide_index=True, width="stretch")
        st.caption("Open a cohort's patients on the Viewer page.")


st.title("Synthetic patient")
try:
    gen = load_generator(str(CHECKPOINT))
except CheckpointError as err:
    st.error(f"No usable generator checkpoint: {err}")
    st.info("Train one with `vct train --cohort workspace/cohorts/train --run workspace/runs/cpu` "
            "(after `vct phantom --n 400 --out workspace/cohorts/train`), then point VCT_GENERATOR at "
            "its `generator/` directory.")
    st.stop()

card = gen.manifest.get("training", {})
st.caption(f"Conditional latent diffusion generator `{gen.path.name}` (preset {gen.cfg.name}), trained on "
           f"{card.get('n_patients', '?')} digital-human phantoms: synthetic CT in HU with a joint 16-class "
           f"segmentation. Grid {gen.cfg.grid_shape} voxels at {gen.cfg.spacing_mm} mm; device {gen.device}.")
tab_one, tab_cohort = st.tabs(["One patient", "Cohort"])

with tab_one:
    inputs, view = st.columns([1.2, 3.8], gap="large")
    with inputs, st.container(border=True):
        st.radio("Sex", list(SEXES), format_func=SEXES.get, horizontal=True, key="gen_sex")
        attrs: dict[str, Any] = {"sex": st.session_state["gen_sex"]}
        for name, (default, step) in INPUTS.items():
            a = ATTRIBUTES[name]
            attrs[name] = st.number_input(f"{a.label} ({a.unit})", min_value=float(a.low), max_value=float(a.high),
                                          value=default, step=step, key=f"gen_{name}")
        seed = st.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1, key="gen_seed")
        sampler = SAMPLER_NAMES.get(gen.cfg.diffusion.sampler, gen.cfg.diffusion.sampler)
        steps = st.slider(f"{sampler} steps", 2, 100, gen.cfg.diffusion.sample_steps, key="gen_steps",
                          help=f"Sampling steps of the checkpoint's sampler, {sampler}")
        guidance = st.slider("Guidance scale", 1.0, 6.0, float(gen.cfg.diffusion.guidance_scale), step=0.5,
                             key="gen_guidance", help="Classifier-free guidance: 1 ignores nothing, higher follows "
                                                      "the attributes more strictly")
        go = st.button("Generate", type="primary", key="gen_go", width="stretch")
    with view:
        if go:
            st.session_state["gen_request"] = (attrs, int(seed), int(steps), float(guidance))
        request = st.session_state.get("gen_request")
        if request is None:
            st.info("Set the attributes and press **Generate**.")
        else:
            out = generate_one(str(CHECKPOINT), *request)
            for msg in out["warnings"]:
                st.warning(f"Outside the training data: {msg}")
            level, width, opacity = view_controls("gen")
            slice_views("gen", out["ct"], out["seg"], out["spacing_mm"], request, level, width, opacity,
                        below_axial=lambda: st.caption(f"Generated in {out['seconds']:.1f} s."))

with tab_cohort:
    cohort_tab(gen)
