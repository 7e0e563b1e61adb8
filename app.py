"""vct Streamlit entry point: page config and navigation only; each page lives in pages/."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

ROOT = Path(__file__).parent

st.set_page_config(page_title="vct — virtual clinical trials", page_icon=str(ROOT / "assets" / "logo.svg"),
                   layout="wide")
st.logo(str(ROOT / "assets" / "logo.svg"))
st.html(f"<style>{(ROOT / 'assets' / 'style.css').read_text()}</style>")

st.navigation(
    {
        "vct": [
            st.Page(ROOT / "pages" / "home.py", title="Start here", icon=":material/home:", default=True),
        ],
        "Virtual trial": [
            st.Page(ROOT / "pages" / "downstream.py", title="1 · Model under test", icon=":material/model_training:"),
            st.Page(ROOT / "pages" / "trial.py", title="2 · Trial", icon=":material/science:"),
            st.Page(ROOT / "pages" / "bias.py", title="3 · Bias explorer", icon=":material/query_stats:"),
            st.Page(ROOT / "pages" / "report.py", title="4 · Report", icon=":material/picture_as_pdf:"),
        ],
        "Anatomy": [
            st.Page(ROOT / "pages" / "phantom.py", title="Digital human", icon=":material/accessibility_new:"),
            st.Page(ROOT / "pages" / "generate.py", title="Synthetic patient", icon=":material/neurology:"),
            st.Page(ROOT / "pages" / "cohorts.py", title="Cohorts", icon=":material/folder_open:"),
        ],
        "Evaluation": [
            st.Page(ROOT / "pages" / "fidelity.py", title="Generator fidelity", icon=":material/fact_check:"),
        ],
    }
).run()
