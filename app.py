"""vct Streamlit entry point: page config and navigation only; each page lives in views/ (a folder named
pages/ would also make Streamlit list its files, helpers included, as pages of their own)."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from vctcore.assets import asset

ROOT = Path(__file__).parent

st.set_page_config(page_title="vct — virtual clinical trials", page_icon=str(asset("logo.svg")), layout="wide")
st.logo(str(asset("logo.svg")))
st.html(f"<style>{asset('style.css').read_text()}</style>")

st.navigation(
    {
        "vct": [
            st.Page(ROOT / "views" / "home.py", title="Start here", icon=":material/home:", default=True),
        ],
        "Virtual trial": [
            st.Page(ROOT / "views" / "downstream.py", title="1 · Model under test", icon=":material/model_training:"),
            st.Page(ROOT / "views" / "trial.py", title="2 · Trial", icon=":material/science:"),
            st.Page(ROOT / "views" / "bias.py", title="3 · Bias explorer", icon=":material/query_stats:"),
            st.Page(ROOT / "views" / "report.py", title="4 · Report", icon=":material/picture_as_pdf:"),
        ],
        "Anatomy": [
            st.Page(ROOT / "views" / "population.py", title="Population", icon=":material/groups:"),
            st.Page(ROOT / "views" / "phantom.py", title="Digital human", icon=":material/accessibility_new:"),
            st.Page(ROOT / "views" / "generate.py", title="Synthetic patient", icon=":material/neurology:"),
            st.Page(ROOT / "views" / "viewer.py", title="Viewer", icon=":material/view_in_ar:"),
            st.Page(ROOT / "views" / "measure.py", title="Measure a CT", icon=":material/straighten:"),
        ],
        "Evaluation": [
            st.Page(ROOT / "views" / "fidelity.py", title="Generator fidelity", icon=":material/fact_check:"),
        ],
    }
).run()
