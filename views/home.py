"""Landing page: what vct is and where to start."""
from __future__ import annotations

import streamlit as st

st.title("vct — virtual clinical trials for radiology AI")
st.markdown(
    "vct tests a CT model under test on synthetic patients: it synthesises CT for a target population with "
    "a conditional generator, measures each synthetic patient's ground truth from its own image, and runs "
    "your model on them. It tells you whether the model holds up in that population, where it fails and "
    "which patient attributes drive its error, and writes the evidence as a PDF bias report. "
    "Start with **1 · Model under test**, then run a **2 · Trial**, explore it in **3 · Bias explorer** and "
    "export the **4 · Report**."
)
st.caption("The default world is digital-human phantoms, not patients: its findings are about the method and "
           "the model's behaviour on that world, and say so in every report.")
c1, c2, c3, c4 = st.columns(4)
c1.page_link("views/downstream.py", label="1 · Model under test", icon=":material/model_training:")
c2.page_link("views/trial.py", label="2 · Trial", icon=":material/science:")
c3.page_link("views/bias.py", label="3 · Bias explorer", icon=":material/query_stats:")
c4.page_link("views/report.py", label="4 · Report", icon=":material/picture_as_pdf:")
