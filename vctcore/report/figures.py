"""The report's figures, drawn with matplotlib (Agg, fonts shipped with matplotlib: nothing downloaded).

Each function takes recorded tables (DataFrames from the trial directory) and returns a matplotlib
Figure, or None when the trial holds nothing to draw. Widths are in inches for an A4 text frame
(about 6.85 in); :func:`png` turns a figure into PNG bytes.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from vctcore.report import fmt  # noqa: E402

WIDTH_IN = 6.8
DPI = 170
TYPE_COLOURS = {"real": "#4477AA", "reconstructed": "#66CCEE", "synthetic": "#EE6677",
                "synthetic_rebiased": "#AA3377", "real_weighted": "#777777"}
POP_COLOURS = ("#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#BBBBBB", "#000000")
ERROR_TYPES = ("real", "reconstructed", "synthetic")
SHORT_TYPES = {"real": "Real", "reconstructed": "Recon.", "synthetic": "Synthetic", "synthetic_rebiased": "Re-biased",
               "real_weighted": "Weighted"}
RC = {"font.family": "DejaVu Sans", "font.size": 7.5, "axes.titlesize": 8, "axes.labelsize": 7.5,
      "xtick.labelsize": 7, "ytick.labelsize": 7, "legend.fontsize": 7, "axes.spines.top": False,
      "axes.spines.right": False, "axes.grid": True, "grid.color": "#e6e6e6", "grid.linewidth": 0.6,
      "axes.axisbelow": True, "svg.hashsalt": "vct", "figure.dpi": DPI}


def png(fig: Figure) -> bytes:
    """PNG bytes of ``fig`` (no timestamp in the file); the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _jitter(n: int, width: float = 0.28) -> np.ndarray:
    """Deterministic horizontal offsets for n points (a fixed-seed spread, the same on every run)."""
    return np.random.default_rng(0).uniform(-width / 2, width / 2, n)


def _pop_colour(pops: Sequence[str]) -> dict[str, str]:
    return {p: POP_COLOURS[k % len(POP_COLOURS)] for k, p in enumerate(pops)}


def error_distributions(preds: pd.DataFrame, rows: pd.DataFrame, *, unit: str, acceptable: float,
                        significant: float) -> Figure | None:
    """Absolute errors per group (box and points) with the recorded MAE and CI (diamond) and the verdict
    thresholds. ``rows``: the recorded MAE rows in display order (columns population, sample_type, mae,
    mae_low, mae_high; Table 1 or the audit's population table with sample_type 'synthetic')."""
    if preds.empty or rows.empty:
        return None
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(WIDTH_IN, 3.1), layout="constrained")
        labels, pops = [], list(dict.fromkeys(rows["population"].astype(str)))
        colours = _pop_colour(pops)
        for k, r in enumerate(rows.itertuples()):
            stype, pop = str(r.sample_type), str(r.population)
            colour = TYPE_COLOURS.get(stype, "#4477AA") if len(set(rows["sample_type"])) > 1 else colours[pop]
            e = preds.loc[(preds["population"].astype(str) == pop) & (preds["sample_type"] == stype), "abs_error"]
            e = e.dropna().to_numpy(float)
            if e.size:
                ax.boxplot([e], positions=[k], widths=0.55, showfliers=False, patch_artist=True,
                           boxprops={"facecolor": colour + "33", "edgecolor": colour, "linewidth": 0.8},
                           medianprops={"color": colour, "linewidth": 1.0},
                           whiskerprops={"color": colour, "linewidth": 0.8}, capprops={"color": colour})
                ax.scatter(k + _jitter(e.size), e, s=5, color=colour, alpha=0.55, linewidths=0, zorder=3)
            if not fmt.missing(r.mae):
                lo, hi = float(r.mae) - float(r.mae_low), float(r.mae_high) - float(r.mae)
                ax.errorbar([k + 0.36], [float(r.mae)], yerr=[[lo], [hi]], fmt="D", ms=4, color="black",
                            elinewidth=1.0, capsize=2.5, zorder=4)
            labels.append(SHORT_TYPES.get(stype, stype) if len(set(rows["sample_type"])) > 1 else pop)
        ax.axhline(acceptable, color="#1b7837", ls="--", lw=0.9)
        ax.axhline(significant, color="#b2182b", ls="--", lw=0.9)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_xlim(-0.6, len(labels) - 0.4)
        if len(set(rows["sample_type"])) > 1:
            _population_groups(ax, list(rows["population"].astype(str)))
        ax.set_ylabel(f"absolute error ({fmt.error_unit(unit)})")
        ax.grid(axis="x", visible=False)
        handles = [Line2D([], [], color="black", marker="D", ls="", ms=4, label="MAE and 95% CI (recorded)"),
                   Line2D([], [], color="#1b7837", ls="--", label=f"acceptable below {acceptable:g}"),
                   Line2D([], [], color="#b2182b", ls="--", label=f"significant above {significant:g}")]
        ax.legend(handles=handles, loc="upper left", frameon=False, ncol=3)
        ax.set_ylim(bottom=0)
        top = ax.get_ylim()[1]
        ax.set_ylim(0, top * 1.12)
    return fig


def _population_groups(ax, pops: list[str]) -> None:
    """Population names under runs of equal values on the x axis, with separators between runs."""
    start = 0
    for k in range(1, len(pops) + 1):
        if k == len(pops) or pops[k] != pops[start]:
            ax.text((start + k - 1) / 2, -0.2, pops[start], transform=ax.get_xaxis_transform(), ha="center",
                    va="top", fontsize=7.5, fontweight="bold")
            if k < len(pops):
                ax.axvline(k - 0.5, color="#999999", lw=0.6)
            start = k


def bias_plane(preds: pd.DataFrame, split: dict[str, Any]) -> Figure | None:
    """Per sample type, the test images in the plane of the two split attributes, coloured by absolute
    error, with the recorded split boundary per sex (paper design)."""
    x, y, coef = split.get("x"), split.get("y"), split.get("coef") or []
    types = [t for t in ERROR_TYPES if t in set(preds["sample_type"])]
    if not x or not y or len(coef) != 2 or not types or x not in preds or y not in preds:
        return None
    intercepts = split.get("intercepts") or {}
    err = preds.loc[preds["sample_type"].isin(types), "abs_error"].to_numpy(float)
    vmax = float(np.nanpercentile(err, 98)) if err.size else 1.0
    with plt.rc_context(RC):
        fig, axes = plt.subplots(1, len(types), figsize=(WIDTH_IN, 2.7), sharex=True, sharey=True,
                                 layout="constrained", squeeze=False)
        sc = None
        for ax, stype in zip(axes[0], types):
            g = preds[preds["sample_type"] == stype]
            for pop, marker in (("ID", "o"), ("OOD", "^")):
                h = g[g["population"] == pop]
                sc = ax.scatter(h[x], h[y], c=h["abs_error"], cmap="viridis", vmin=0, vmax=vmax, s=12,
                                marker=marker, linewidths=0.2, edgecolors="white", label=pop)
            xs = np.linspace(*ax.get_xlim(), 50) if len(g) else np.zeros(0)
            for (sex, c), ls in zip(sorted(intercepts.items()), ("--", ":")):
                if coef[1] != 0 and xs.size:
                    ax.plot(xs, -(coef[0] * xs + float(c)) / coef[1], color="black", ls=ls, lw=0.9,
                            label=f"boundary ({sex})")
            ax.set_title(fmt.sample_type(stype))
            ax.set_xlabel(fmt.attribute(x))
        axes[0][0].set_ylabel(fmt.attribute(y))
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), frameon=False)
        if sc is not None:
            fig.colorbar(sc, ax=axes[0].tolist(), shrink=0.9, label="absolute error")
    return fig


def error_vs_attributes(preds: pd.DataFrame, attributes: Sequence[str], *, unit: str,
                        sample_types: Sequence[str]) -> Figure | None:
    """Absolute error against each attribute (columns), one row per sample type, points coloured by population."""
    attrs = [a for a in dict.fromkeys(attributes) if a in preds.columns]
    types = [t for t in sample_types if t in set(preds["sample_type"])]
    if not attrs or not types:
        return None
    colours = _pop_colour(list(dict.fromkeys(preds["population"].astype(str))))
    with plt.rc_context(RC):
        fig, axes = plt.subplots(len(types), len(attrs), figsize=(WIDTH_IN, 1.75 * len(types) + 0.5),
                                 sharey=True, sharex="col", layout="constrained", squeeze=False)
        for i, stype in enumerate(types):
            g = preds[preds["sample_type"] == stype]
            for j, a in enumerate(attrs):
                ax = axes[i][j]
                for pop, h in g.groupby(g["population"].astype(str), sort=False):
                    xv = h[a].map({"F": 0, "M": 1}) if a == "sex" else h[a]
                    ax.scatter(xv, h["abs_error"], s=6, color=colours[pop], alpha=0.7, linewidths=0, label=pop)
                if i == len(types) - 1:
                    ax.set_xlabel(fmt.attribute(a))
                if j == 0:
                    ax.set_ylabel(f"{fmt.sample_type(stype)}\n|error| ({fmt.error_unit(unit)})")
        handles = [Line2D([], [], marker="o", ls="", color=c, label=p) for p, c in colours.items()]
        fig.legend(handles=handles, loc="outside upper center", ncol=min(len(handles), 6), frameon=False)
    return fig


def importance_bars(t4: pd.DataFrame) -> Figure | None:
    """Permutation and impurity importance per feature and sample type, bars with \u00b1 SD over refits."""
    if t4 is None or t4.empty:
        return None
    feats = list(dict.fromkeys(t4["feature"]))
    types = list(dict.fromkeys(t4["sample_type"]))
    by = t4.set_index(["sample_type", "feature"])
    h = 0.8 / len(types)
    with plt.rc_context(RC):
        fig, axes = plt.subplots(1, 2, figsize=(WIDTH_IN, 0.32 * len(feats) + 1.0), sharey=True,
                                 layout="constrained")
        for ax, kind in zip(axes, ("permutation", "impurity")):
            for k, s in enumerate(types):
                mean = [by.loc[(s, f), f"{kind}_mean"] if (s, f) in by.index else np.nan for f in feats]
                sd = [by.loc[(s, f), f"{kind}_sd"] if (s, f) in by.index else np.nan for f in feats]
                pos = np.arange(len(feats)) - 0.4 + h * (k + 0.5)
                ax.barh(pos, mean, height=h * 0.9, xerr=sd, color=TYPE_COLOURS.get(s, "#999999"),
                        error_kw={"elinewidth": 0.7, "capsize": 1.5}, label=fmt.sample_type(s))
            ax.axvline(0, color="#555555", lw=0.6)
            ax.set_title(f"{kind} importance (mean \u00b1 SD)")
            ax.grid(axis="y", visible=False)
        axes[0].set_yticks(range(len(feats)), [fmt.attribute(f, unit=False) for f in feats])
        axes[0].invert_yaxis()
        axes[1].legend(loc="lower right", frameon=False)
    return fig


def shap_summary(shap: pd.DataFrame, preds: pd.DataFrame, features: Sequence[str]) -> Figure | None:
    """SHAP values per feature (rows) and sample type (panels), each point one image, coloured by the
    image's attribute value (low blue, high red, ranked within the feature)."""
    if shap is None or shap.empty:
        return None
    feats = [f for f in features if f in shap.columns]
    types = list(dict.fromkeys(shap["sample_type"]))
    order = sorted(feats, key=lambda f: -float(shap[f].abs().mean()))
    values = preds.drop_duplicates(["sample_type", "patient_id"]).set_index(["sample_type", "patient_id"])
    with plt.rc_context(RC):
        fig, axes = plt.subplots(1, len(types), figsize=(WIDTH_IN, 0.3 * len(order) + 1.1), sharey=True,
                                 layout="constrained", squeeze=False)
        sc = None
        for ax, s in zip(axes[0], types):
            g = shap[shap["sample_type"] == s]
            keys = list(zip(g["sample_type"], g["patient_id"].astype(str)))
            for i, f in enumerate(order):
                raw = values.reindex(keys)[f] if f in values.columns else pd.Series(np.nan, index=range(len(g)))
                raw = raw.map({"F": 0, "M": 1}) if f == "sex" else pd.to_numeric(raw, errors="coerce")
                colour = pd.Series(raw.to_numpy()).rank(pct=True).to_numpy()
                sc = ax.scatter(g[f], i + _jitter(len(g), 0.5), c=colour, cmap="coolwarm", vmin=0, vmax=1, s=5,
                                linewidths=0)
            ax.axvline(0, color="#555555", lw=0.6)
            ax.set_title(fmt.sample_type(s))
            ax.set_xlabel("SHAP value (effect on |error|)")
            ax.grid(axis="y", visible=False)
        axes[0][0].set_yticks(range(len(order)), [fmt.attribute(f, unit=False) for f in order])
        axes[0][0].invert_yaxis()
        if sc is not None:
            cb = fig.colorbar(sc, ax=axes[0].tolist(), shrink=0.8, ticks=[0, 1])
            cb.ax.set_yticklabels(["low", "high"])
            cb.set_label("attribute value")
    return fig


def _outline(seg: np.ndarray) -> np.ndarray:
    """Boolean (rows, cols): pixels of a labelled region that touch another label (4-neighbourhood)."""
    edge = np.zeros(seg.shape, bool)
    edge[1:, :] |= seg[1:, :] != seg[:-1, :]
    edge[:-1, :] |= seg[:-1, :] != seg[1:, :]
    edge[:, 1:] |= seg[:, 1:] != seg[:, :-1]
    edge[:, :-1] |= seg[:, :-1] != seg[:, 1:]
    return edge & (seg > 0)


def _slice_rgb(hu: np.ndarray, seg: np.ndarray) -> np.ndarray:
    from vctcore.render import MERGED_COLOURS, WINDOWS, window

    grey = window(hu, *WINDOWS["soft tissue"])
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    edge = _outline(seg)
    for label, colour in MERGED_COLOURS.items():
        rgb[edge & (seg == label)] = colour
    return rgb


def _crop(examples: list[dict[str, Any]]) -> tuple[slice, slice]:
    """The rows and columns holding body in any of ``examples`` (same shapes), with a small margin."""
    mask = np.zeros(examples[0]["hu"].shape, bool)
    for ex in examples:
        if ex["hu"].shape == mask.shape:
            mask |= ex["hu"] > -500
    if not mask.any():
        return slice(None), slice(None)
    r, c = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return slice(max(0, r[0] - 3), r[-1] + 4), slice(max(0, c[0] - 3), c[-1] + 4)


def example_slices(examples: list[dict[str, Any]], title: str, max_height_in: float = 5.0) -> Figure:
    """One row of coronal example slices (soft-tissue window, segmentation outlined in the class colours),
    each titled with its sample type and patient; ``examples`` as read by ``read_examples``."""
    from vctcore.labels import MERGED_CLASSES
    from vctcore.render import MERGED_COLOURS

    same = len({ex["hu"].shape for ex in examples}) == 1
    rows, cols = _crop(examples) if same else (slice(None), slice(None))
    first = examples[0]
    h_mm = first["hu"][rows, cols].shape[0] * float(first["spacing_mm"][0])
    w_mm = first["hu"][rows, cols].shape[1] * float(first["spacing_mm"][1])
    panel_w = min(WIDTH_IN / 6, max_height_in * w_mm / h_mm)
    with plt.rc_context(RC):
        fig, axes = plt.subplots(1, len(examples), figsize=(max(panel_w * len(examples), 3.0),
                                                            panel_w * h_mm / w_mm + 1.0),
                                 layout="constrained", squeeze=False)
        present: set[int] = set()
        for ax, ex in zip(axes[0], examples):
            hu, seg = (ex["hu"][rows, cols], ex["seg"][rows, cols]) if same else (ex["hu"], ex["seg"])
            sr, sc = (float(v) for v in ex["spacing_mm"])
            ax.imshow(_slice_rgb(hu, seg), extent=(0, hu.shape[1] * sc, hu.shape[0] * sr, 0), interpolation="bilinear")
            present |= set(int(v) for v in np.unique(seg) if v)
            ax.set_title(f"{fmt.sample_type(ex['sample_type'])}\n{ex['patient_id']}", fontsize=6.5)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            for side in ax.spines.values():
                side.set_visible(False)
        handles = [Patch(color=np.array(MERGED_COLOURS[k]) / 255, label=MERGED_CLASSES.get(k, str(k)).replace("_", " "))
                   for k in sorted(present) if k in MERGED_COLOURS]
        fig.suptitle(title, fontsize=8, fontweight="bold")
        if handles:
            fig.legend(handles=handles, loc="outside lower center", ncol=4, frameon=False, fontsize=5.5,
                       handlelength=1.0, columnspacing=1.0)
    return fig
