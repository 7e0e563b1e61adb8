"""Generator fidelity: a saved ``vct evaluate-generator`` report (targets, paper figures, plots)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from vctcore.fidelity import EvaluationError, load_report
from vctcore.fidelity.plots import load_figures
from vctcore.fidelity.summary import (compare_rows, context_rows, find_reports, per_class_rows, provenance,
                                      shipped_reports, run_line, summary_rows)
from vctcore.workspace import workspace_root


st.title("Generator fidelity")
st.caption(
    "How faithful the generator is, measured as in the seed paper (sections 1.3-1.4, Fig. 4): each real patient's "
    "attributes are given to the generator, and the synthetic patient is segmented and measured exactly like the "
    "real one. Targets are the project's; the paper's figures are for its NMDID model and TotalSegmentator, not "
    "this phantom world."
)

root = workspace_root()
found = find_reports(root) + shipped_reports()
options = [str(p) for p in found]
if not options:
    st.info(f"No saved evaluation under {root}. Run `vct evaluate-generator --real {root / 'cohorts' / 'holdout'} "
            f"--n 100 --out {root / 'evaluations' / 'default'}` (about 30 minutes on 2 CPU cores).")
    st.stop()


def _name(p: str) -> str:
    return str(Path(p).relative_to(root)) if Path(p).is_relative_to(root) else f"shipped with the default generator ({p})"


choice = st.selectbox("Evaluation", options, key="fid_dir", format_func=_name)
try:
    report = load_report(choice)
except EvaluationError as err:
    st.error(str(err))
    st.stop()

n_pass = sum(report.get("passed", {}).values())
n_all = len(report.get("passed", {}))
c1, c2, c3 = st.columns(3)
c1.metric("Targets met", f"{n_pass} / {n_all}")
c2.metric("Matched pairs", report.get("n"))
c3.metric("Checkpoint (diffusion sha256)",
          str(report.get("checkpoint", {}).get("sha256", {}).get("diffusion.safetensors", "?"))[:12])
st.caption(run_line(report))

st.subheader("Targets")
st.dataframe(pd.DataFrame(summary_rows(report)), hide_index=True, width="stretch",
             column_config={"value": st.column_config.NumberColumn(format="%.3f"),
                            "paper": st.column_config.NumberColumn(format="%.3f")})
others = [p for p in options if p != choice]
if others:
    base = st.selectbox("Compare with (before)", [""] + others, key="fid_base",
                        format_func=lambda p: "no comparison" if not p else _name(p))
    if base:
        try:
            before = load_report(base)
        except EvaluationError as err:
            st.error(str(err))
        else:
            st.caption(f"Before: {run_line(before)}")
            st.dataframe(pd.DataFrame(compare_rows(before, report)), hide_index=True, width="stretch",
                         column_config={k: st.column_config.NumberColumn(format="%.3f")
                                        for k in ("before", "after", "change")})
st.subheader("Context")
st.dataframe(pd.DataFrame(context_rows(report)), hide_index=True, width="stretch",
             column_config={"value": st.column_config.NumberColumn(format="%.3f"),
                            "paper": st.column_config.NumberColumn(format="%.3f")})
realism = report.get("metrics", {}).get("realism", {})
if realism.get("feature_extractor"):
    st.caption(f"Realism distance: Fréchet distance on {realism['feature_extractor']}. {realism.get('design', '')}.")

st.subheader("Figures")
figures = load_figures(choice, report)
if not figures:
    st.warning("This report has no saved figures.")
for name, fig in figures.items():
    st.plotly_chart(fig, key=f"fid_fig_{name}", width="stretch")

with st.expander("Per organ class (Table 1 layout)"):
    st.dataframe(pd.DataFrame(per_class_rows(report)), hide_index=True, width="stretch")
with st.expander("Provenance"):
    st.json(provenance(report))
