"""Virtual clinical trial: the trial's design, run and statistics.

``stats`` (MAE with bootstrap CIs, Z against real errors, degradation tests, verdicts, error
correlations), ``weighting`` (the paper's importance-weighted baseline), ``attribution`` (random-forest
error regression, feature importances, SHAP), ``subgroups`` (slice scan with FDR control). Nothing
here imports torch or streamlit; import the submodules directly.
"""
