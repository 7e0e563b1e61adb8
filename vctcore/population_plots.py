"""Plotly figures of a sampled population for the population designer: marginal histograms per sex, a
pair plot (scatter matrix) coloured by sex, and a bias split's boundary on its own axes.

They read an attribute table (one row per patient, :mod:`vctcore.attributes` columns in years, cm, kg,
%, HU, L; ``bmi`` in kg/m2 is added when missing) and compute nothing beyond what they draw.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from vctcore.attributes import ATTRIBUTES, SEX_CATEGORIES
from vctcore.population import BiasSplit
from vctcore.population_design import with_bmi

#: Okabe-Ito colours (colour-blind safe), one per sex; patients outside a split in grey
SEX_COLOURS = {"F": "#CC79A7", "M": "#0072B2"}
SEX_NAMES = {"F": "women", "M": "men"}
OUTSIDE_COLOUR = "#BBBBBB"
MARGINAL_COLUMNS = ("age_years", "height_cm", "weight_kg", "bmi", "bfp_pct", "mmp_pct", "bone_density_hu",
                    "body_volume_l")
PAIR_COLUMNS = ("age_years", "height_cm", "weight_kg", "bfp_pct", "mmp_pct", "bone_density_hu")
LAYOUT = dict(template="plotly_white", margin=dict(l=50, r=20, t=50, b=40),
              legend=dict(orientation="h", y=1.08, x=0))


def axis_label(name: str) -> str:
    """A column's label with its unit, e.g. "Height (cm)"; "BMI (kg/m2)" for bmi."""
    if name == "bmi":
        return "BMI (kg/m2)"
    a = ATTRIBUTES[name]
    return f"{a.label} ({a.unit})" if a.unit else a.label


def _sexes(df: pd.DataFrame) -> list[str]:
    return [s for s in SEX_CATEGORIES if (df["sex"] == s).any()]


def _ensure_bmi(df: pd.DataFrame) -> pd.DataFrame:
    return df if "bmi" in df.columns else with_bmi(df)


def marginals_figure(df: pd.DataFrame, columns: Sequence[str] = MARGINAL_COLUMNS, *, n_cols: int = 4,
                     bins: int = 30) -> go.Figure:
    """One panel per column with overlaid histograms per sex (trace names "women"/"men", one per
    column and sex present); counts of patients on the y axes."""
    df = _ensure_bmi(df)
    n_rows = -(-len(columns) // n_cols)
    fig = make_subplots(rows=n_rows, cols=n_cols, subplot_titles=[axis_label(c) for c in columns],
                        vertical_spacing=0.14, horizontal_spacing=0.06)
    for i, col in enumerate(columns):
        row, c = divmod(i, n_cols)
        for sex in _sexes(df):
            fig.add_trace(go.Histogram(x=df.loc[df["sex"] == sex, col].astype(float), name=SEX_NAMES[sex],
                                       legendgroup=sex, showlegend=i == 0, nbinsx=bins, opacity=0.5,
                                       marker_color=SEX_COLOURS[sex]), row=row + 1, col=c + 1)
    fig.update_layout(barmode="overlay", height=260 * n_rows + 40,
                      **{**LAYOUT, "margin": dict(l=50, r=20, t=90, b=40),
                         "legend": dict(orientation="h", yanchor="bottom", y=1.06, x=0)})
    fig.update_annotations(font_size=12)
    return fig


def pair_figure(df: pd.DataFrame, columns: Sequence[str] = PAIR_COLUMNS) -> go.Figure:
    """Scatter matrix of ``columns`` (upper triangle, no diagonal), one Splom trace per sex."""
    df = _ensure_bmi(df)
    fig = go.Figure()
    for sex in _sexes(df):
        part = df[df["sex"] == sex]
        fig.add_trace(go.Splom(
            dimensions=[dict(label=axis_label(c), values=part[c].astype(float)) for c in columns],
            name=SEX_NAMES[sex], marker=dict(color=SEX_COLOURS[sex], size=3, opacity=0.6),
            diagonal_visible=False, showlowerhalf=False, text=part["id"] if "id" in part else None))
    size = 130 * len(columns)
    fig.update_layout(height=max(420, size), dragmode="select", **LAYOUT)
    fig.update_layout(font_size=10)
    return fig


def boundary_line(split: BiasSplit, x_range: tuple[float, float], y_range: tuple[float, float]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Points (x, y) of the line a*x + b*y + c = 0 across the plotted ranges (units of the axes)."""
    (a, b), c = split.coef, split.intercept
    if b == 0:
        x0 = -c / a
        return np.array([x0, x0]), np.array(y_range, dtype=float)
    x = np.linspace(*x_range, 50)
    return x, -(a * x + c) / b


def split_figure(df: pd.DataFrame, split: BiasSplit) -> go.Figure:
    """The split's x against its y for a population sampled without the split: kept patients coloured by
    sex, removed ones grey, and the boundary a*x + b*y + c = 0 as a dashed line ("boundary")."""
    df = _ensure_bmi(df)
    x, y = df[split.x].astype(float), df[split.y].astype(float)
    inside = split.inside(df)
    fig = go.Figure()
    fig.add_trace(go.Scattergl(x=x[~inside], y=y[~inside], mode="markers", name="removed by the split",
                               marker=dict(color=OUTSIDE_COLOUR, size=4, opacity=0.5)))
    for sex in _sexes(df):
        keep = inside & (df["sex"] == sex).to_numpy()
        fig.add_trace(go.Scattergl(x=x[keep], y=y[keep], mode="markers", name=f"kept: {SEX_NAMES[sex]}",
                                   marker=dict(color=SEX_COLOURS[sex], size=4, opacity=0.7)))
    pad_x, pad_y = 0.05 * float(np.ptp(x) or 1.0), 0.05 * float(np.ptp(y) or 1.0)
    x_range = (float(x.min()) - pad_x, float(x.max()) + pad_x)
    y_range = (float(y.min()) - pad_y, float(y.max()) + pad_y)
    bx, by = boundary_line(split, x_range, y_range)
    fig.add_trace(go.Scatter(x=bx, y=by, mode="lines", name="boundary", line=dict(color="black", dash="dash")))
    share = float(inside.mean()) if len(inside) else 0.0
    fig.update_layout(title=f"Split {split.describe()}: keeps {100 * share:.0f} % of the population",
                      xaxis=dict(title=axis_label(split.x), range=x_range),
                      yaxis=dict(title=axis_label(split.y), range=y_range), height=460, **LAYOUT)
    return fig
