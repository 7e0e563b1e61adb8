"""Synthetic patient: condition the trained generator on attributes and look at what it makes;
or write a whole synthetic cohort from a population spec."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from views._slices import slice_views, view_controls
from vctcore.attributes import ATTRIBUTES
from vctcore.generator import DEFAULT_CHECKPOINT, Generator
from vctcore.models.checkpoint import CheckpointError
from vctcore.workspace import REPO, workspace_root

CHECKPOINT = Path(os.environ.get("VCT_GENERATOR", DEFAULT_CHECKPOINT))
SEXES = {"F": "female", "M": "male"}
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
        steps = st.slider("DDIM steps", 5, 100, gen.cfg.diffusion.sample_steps, key="gen_steps")
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
    specs = sorted((REPO / "assets" / "populations").glob("*.yaml"))
    spec_path = st.selectbox("Population", specs, format_func=lambda p: p.stem, key="gen_pop")
    c1, c2, c3 = st.columns(3)
    n = c1.number_input("Patients", 1, 1000, 10, key="gen_n")
    cseed = c2.number_input("Seed", 0, 2**31 - 1, 0, key="gen_cseed")
    name = c3.text_input("Cohort name", "synthetic", key="gen_name")
    if st.button("Write cohort", key="gen_cohort_go"):
        from vctcore.generate_cohort import generate_cohort
        from vctcore.population import PopulationSpec

        out_dir = workspace_root() / "cohorts" / name
        table = PopulationSpec.from_yaml(spec_path).sample(int(n), seed=int(cseed))
        bar = st.progress(0.0, text="Generating…")
        generate_cohort(gen, table, seed=int(cseed), out=out_dir,
                        progress=lambda d, t, pid: bar.progress(d / t, text=f"{pid}: {d}/{t}"))
        st.success(f"Wrote {n} patients to {out_dir}; open them on the Cohorts page.")
