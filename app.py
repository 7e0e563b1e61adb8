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
        "Anatomy": [
            st.Page(ROOT / "pages" / "phantom.py", title="Digital human", icon=":material/accessibility_new:",
                    default=True),
            st.Page(ROOT / "pages" / "generate.py", title="Synthetic patient", icon=":material/neurology:"),
            st.Page(ROOT / "pages" / "cohorts.py", title="Cohorts", icon=":material/folder_open:"),
        ],
        "Evaluation": [
            st.Page(ROOT / "pages" / "fidelity.py", title="Generator fidelity", icon=":material/fact_check:"),
        ],
    }
).run()
