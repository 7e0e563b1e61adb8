"""Interactive (Plotly) figures of a finished trial, for the app's bias explorer. They read a
:class:`vctcore.trial.result.TrialResult` and compute nothing beyond what they draw.

Errors are absolute errors in the task's unit (percentage points for BFP and MMP); attributes are in
their :mod:`vctcore.attributes` units.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from vctcore.attributes import ATTRIBUTES
from vctcore.trial.attribution import FEATURES
from vctcore.trial.result import TrialResult

#: one colour per sample type (Okabe-Ito, colour-blind safe), shared by every figure
SAMPLE_COLOURS = {"real": "#0072B2", "reconstructed": "#009E73", "synthetic": "#E69F00",
                  "synthetic_rebiased": "#CC79A7"}
POPULATION_SYMBOLS = ("circle", "diamond", "square", "triangle-up", "x", "cross")
LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=50, b=50), legend=dict(orientation="h", y=-0.2))


def label(name: str) -> str:
    """An attribute's axis label with its unit, e.g. "body_volume_l (L)"."""
    a = ATTRIBUTES.get(name)
    unit = getattr(a, "unit", "") if a is not None else ""
    return f"{name} ({unit})" if unit else name


def error_unit(result: TrialResult) -> str:
    """The unit of the trial's errors: its target's unit, "percentage points" for a % target."""
    unit = getattr(ATTRIBUTES.get(str(result.summary.get("task", ""))), "unit", "") or ""
    return "percentage points" if unit == "%" else unit


def error_distributions(result: TrialResult) -> go.Figure:
    """Box plots of the absolute error per population, one box per sample type."""
    p = result.predictions
    fig = go.Figure()
    for stype, colour in SAMPLE_COLOURS.items():
        g = p[p["sample_type"] == stype]
        if len(g):
            fig.add_trace(go.Box(x=g["population"], y=g["abs_error"], name=stype, marker_color=colour,
                                 boxpoints="all", jitter=0.4, pointpos=0, customdata=g[["patient_id"]],
                                 hovertemplate="%{customdata[0]}: %{y:.2f}<extra></extra>"))
    fig.update_layout(boxmode="group", title="Absolute error per population",
                      yaxis_title=f"absolute error ({error_unit(result)})", **LAYOUT)
    return fig


def split_lines(result: TrialResult, x_range: tuple[float, float]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The split boundary of a paper trial in its (x, y) plane, one line per sex intercept:
    ``[(label, xs, ys)]``; empty without a split."""
    split = result.summary.get("split") or {}
    if not split.get("coef"):
        return []
    a, b = split["coef"]
    xs = np.linspace(*x_range, 50)
    out = []
    for sex, c in sorted((split.get("intercepts") or {}).items()):
        if b:
            out.append((f"boundary ({sex})", xs, -(a * xs + c) / b))
    return out


def split_plane(result: TrialResult, sample_type: str) -> go.Figure:
    """A paper trial's test images in the split's plane (x = split.x, y = split.y), coloured by absolute
    error, one symbol per population, with the boundary per sex (the paper's Fig. 5c-h)."""
    split = result.summary.get("split") or {}
    x, y = split.get("x"), split.get("y")
    p = result.predictions[result.predictions["sample_type"] == sample_type]
    fig = go.Figure()
    if not x or not y or p.empty:
        return fig.update_layout(title="No split plane in this trial", **LAYOUT)
    for k, (pop, g) in enumerate(p.groupby("population", sort=False)):
        fig.add_trace(go.Scatter(
            x=g[x], y=g[y], mode="markers", name=str(pop),
            marker=dict(symbol=POPULATION_SYMBOLS[k % len(POPULATION_SYMBOLS)], size=9, color=g["abs_error"],
                        colorscale="Viridis", cmin=0, cmax=float(p["abs_error"].quantile(0.98)),
                        colorbar=dict(title=f"|error| ({error_unit(result)})") if k == 0 else None,
                        line=dict(width=0.5, color="#333")),
            customdata=np.stack([g["patient_id"], g["sex"], g["abs_error"]], axis=1),
            hovertemplate="%{customdata[0]} (%{customdata[1]}): |error| %{customdata[2]:.2f}<extra></extra>"))
    lo, hi = float(p[x].min()), float(p[x].max())
    for name, xs, ys in split_lines(result, (lo, hi)):
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, line=dict(dash="dash", color="#444")))
    ylo, yhi = float(p[y].min()), float(p[y].max())
    pad = 0.05 * (yhi - ylo or 1)
    fig.update_yaxes(range=[ylo - pad, yhi + pad])
    fig.update_layout(title=f"{sample_type}: error in the split plane", xaxis_title=label(x), yaxis_title=label(y),
                      **LAYOUT)
    return fig


def error_vs_attribute(result: TrialResult, attribute: str, sample_types: tuple[str, ...] | None = None) -> go.Figure:
    """Absolute error against one attribute, one colour per sample type, one symbol per population."""
    p = result.predictions
    fig = go.Figure()
    pops = list(dict.fromkeys(p["population"]))
    for stype in sample_types or tuple(SAMPLE_COLOURS):
        g = p[p["sample_type"] == stype]
        if g.empty or attribute not in g:
            continue
        symbols = [POPULATION_SYMBOLS[pops.index(v) % len(POPULATION_SYMBOLS)] for v in g["population"]]
        fig.add_trace(go.Scatter(x=g[attribute], y=g["abs_error"], mode="markers", name=stype,
                                 marker=dict(color=SAMPLE_COLOURS[stype], symbol=symbols, size=7, opacity=0.8),
                                 customdata=np.stack([g["patient_id"], g["population"]], axis=1),
                                 hovertemplate="%{customdata[0]} (%{customdata[1]}): %{y:.2f}<extra></extra>"))
    fig.update_layout(title=f"Absolute error against {attribute}", xaxis_title=label(attribute),
                      yaxis_title=f"absolute error ({error_unit(result)})", **LAYOUT)
    return fig


def importance_bars(result: TrialResult, kind: str = "permutation") -> go.Figure:
    """Random-forest feature importances of |error| (``kind``: permutation or impurity), mean with the
    bootstrap standard deviation as error bars, one bar group per sample type."""
    t = result.tables.get("table4", pd.DataFrame())
    fig = go.Figure()
    if t.empty:
        return fig.update_layout(title="No feature importances in this trial", **LAYOUT)
    for stype, g in t.groupby("sample_type", sort=False):
        fig.add_trace(go.Bar(x=g["feature"], y=g[f"{kind}_mean"], name=str(stype),
                             marker_color=SAMPLE_COLOURS.get(str(stype), "#888"),
                             error_y=dict(type="data", array=g[f"{kind}_sd"], visible=True)))
    fig.update_layout(barmode="group", title=f"{kind.capitalize()} importance for |error| (mean ± SD)",
                      yaxis_title="importance", **LAYOUT)
    return fig


def shap_frame(result: TrialResult, sample_type: str) -> pd.DataFrame:
    """Long table of SHAP values joined to the feature values: patient_id, feature, shap, value, scaled
    (the value scaled to 0-1 within its feature, for colour)."""
    s = result.tables.get("shap", pd.DataFrame())
    if s.empty:
        return pd.DataFrame(columns=["patient_id", "feature", "shap", "value", "scaled"])
    s = s[s["sample_type"] == sample_type]
    feats = [f for f in FEATURES if f in s.columns]
    long = s.melt(id_vars=["patient_id"], value_vars=feats, var_name="feature", value_name="shap")
    p = result.predictions[result.predictions["sample_type"] == sample_type].drop_duplicates("patient_id")
    p = p.set_index("patient_id")
    vals = []
    for f, pid in zip(long["feature"], long["patient_id"]):
        v = p.at[pid, f] if pid in p.index and f in p.columns else np.nan
        vals.append(1.0 if v == "M" else 0.0 if v == "F" else pd.to_numeric(v, errors="coerce"))
    long["value"] = np.asarray(vals, dtype=float)
    lo = long.groupby("feature")["value"].transform("min")
    hi = long.groupby("feature")["value"].transform("max")
    long["scaled"] = ((long["value"] - lo) / (hi - lo).replace(0, np.nan)).fillna(0.5)
    return long


def shap_summary(result: TrialResult, sample_type: str) -> go.Figure:
    """SHAP summary (beeswarm-like): one row per feature ordered by mean |SHAP|, each patient a dot at its
    SHAP value (|error| units), coloured from low (blue) to high (red) feature value."""
    long = shap_frame(result, sample_type)
    fig = go.Figure()
    if long.empty:
        return fig.update_layout(title=f"No SHAP values for {sample_type}", **LAYOUT)
    order = long.groupby("feature")["shap"].apply(lambda v: v.abs().mean()).sort_values().index.tolist()
    rng = np.random.default_rng(0)
    ypos = long["feature"].map({f: k for k, f in enumerate(order)}).to_numpy(float) + rng.uniform(-0.25, 0.25, len(long))
    fig.add_trace(go.Scatter(x=long["shap"], y=ypos, mode="markers",
                             marker=dict(color=long["scaled"], colorscale="RdBu_r", size=6, cmin=0, cmax=1,
                                         colorbar=dict(title="feature value", tickvals=[0, 1], ticktext=["low", "high"])),
                             customdata=np.stack([long["patient_id"], long["feature"], long["value"]], axis=1),
                             hovertemplate="%{customdata[0]}: %{customdata[1]} = %{customdata[2]:.3g}, "
                                           "SHAP %{x:.3f}<extra></extra>", showlegend=False))
    fig.update_yaxes(tickvals=list(range(len(order))), ticktext=order)
    fig.add_vline(x=0, line_color="#999")
    fig.update_layout(title=f"SHAP values of the |error| forest ({sample_type})",
                      xaxis_title=f"SHAP value (|error| {error_unit(result)})", height=420, **LAYOUT)
    return fig


def shap_dependence(result: TrialResult, sample_type: str, feature: str) -> go.Figure:
    """SHAP dependence: a feature's value (x) against its SHAP value (y), one dot per patient."""
    long = shap_frame(result, sample_type)
    g = long[long["feature"] == feature]
    fig = go.Figure(go.Scatter(x=g["value"], y=g["shap"], mode="markers",
                               marker=dict(color=SAMPLE_COLOURS.get(sample_type, "#888"), size=7),
                               customdata=g[["patient_id"]],
                               hovertemplate="%{customdata[0]}: %{x:.3g} -> %{y:.3f}<extra></extra>"))
    fig.add_hline(y=0, line_color="#999")
    fig.update_layout(title=f"SHAP dependence on {feature} ({sample_type})", xaxis_title=label(feature),
                      yaxis_title=f"SHAP value (|error| {error_unit(result)})", **LAYOUT)
    return fig
