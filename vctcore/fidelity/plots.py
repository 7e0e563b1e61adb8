"""Figures of a fidelity report: Plotly JSON for the app, PNG for documents.

* ``conditioning_<check>``: box plots of a measured attribute per conditioning bin for real,
  reconstructed and synthetic images (the paper's Fig. 4).
* ``organ_volumes``: synthetic vs matched real organ volume (mL, log axes), one colour per class.
* ``dice_per_class``: joint-segmentation Dice per class, and the independent segmenter's Dice on the
  real images for reference.

PNG files come from kaleido when it is installed, else from matplotlib (same data, same layout).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from vctcore.progress import Progress

GROUP_COLORS = {"real": "#4C72B0", "reconstructed": "#DD8452", "synthetic": "#55A868"}
CHECK_TITLES = {"bone_density_by_age_z": ("Bone density by age bin", "age bin (years)"),
                "weight_z": ("Measured weight by weight bin", "weight bin (kg)"),
                "height_z": ("Measured height by height bin", "height bin (cm)")}


def _finite(v: Any) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def box_data(metric: dict[str, Any]) -> dict[str, tuple[list[str], list[float]]]:
    """Group -> (bin label per value, value) for a conditioning metric's box plot."""
    bins = metric.get("bin_of_patient", [])
    out = {}
    for group, values in metric.get("values", {}).items():
        pairs = [(b, v) for b, v in zip(bins, values) if _finite(v)]
        out[group] = ([p[0] for p in pairs], [float(p[1]) for p in pairs])
    return out


def conditioning_figure(name: str, metric: dict[str, Any]) -> go.Figure:
    title, xlabel = CHECK_TITLES[name]
    order = [b["bin"] for b in metric.get("bins", [])]
    fig = go.Figure()
    for group, (x, y) in box_data(metric).items():
        fig.add_trace(go.Box(x=x, y=y, name=group, marker_color=GROUP_COLORS.get(group), boxpoints="outliers"))
    z = metric.get("value")
    fig.update_layout(title=f"{title} (mean |Z| = {z:.2f})" if _finite(z) else title, boxmode="group",
                      xaxis={"title": xlabel, "categoryorder": "array", "categoryarray": order},
                      yaxis={"title": f"{metric.get('field')} ({metric.get('unit')})"}, template="plotly_white")
    return fig


def volume_pairs(real: list[dict], syn: list[dict]) -> dict[str, tuple[list[float], list[float]]]:
    """Class -> (real volumes, synthetic volumes) in mL over matched pairs where both are > 0."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for r, s in zip(real, syn):
        for name, stats in r["organs"].items():
            vr, vs = stats["volume_ml"], s["organs"][name]["volume_ml"]
            if vr > 0 and vs > 0:
                out.setdefault(name, ([], []))
                out[name][0].append(vr)
                out[name][1].append(vs)
    return out


def volume_figure(real: list[dict], syn: list[dict], corr: float | None) -> go.Figure:
    fig = go.Figure()
    pairs = volume_pairs(real, syn)
    for name, (x, y) in pairs.items():
        fig.add_trace(go.Scatter(x=x, y=y, mode="markers", name=name, marker={"size": 6, "opacity": 0.7}))
    vals = [v for x, y in pairs.values() for v in x + y]
    if vals:
        lo, hi = min(vals), max(vals)
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="identity",
                                 line={"color": "grey", "dash": "dash"}))
    title = "Organ volumes, synthetic vs matched real"
    fig.update_layout(title=f"{title} (mean r = {corr:.3f})" if _finite(corr) else title, template="plotly_white",
                      xaxis={"title": "real (mL)", "type": "log"}, yaxis={"title": "synthetic (mL)", "type": "log"})
    return fig


def dice_figure(metrics: dict[str, Any]) -> go.Figure:
    fig = go.Figure()
    for key, label in (("joint_seg_dice", "joint vs independent (synthetic)"),
                       ("segmenter_dice_on_real", "independent vs truth (real)")):
        per = metrics.get(key, {}).get("per_class", {})
        fig.add_trace(go.Bar(x=list(per), y=[v if _finite(v) else None for v in per.values()], name=label))
    fig.update_layout(title="Dice per class", barmode="group", yaxis={"title": "Dice", "range": [0, 1]},
                      template="plotly_white")
    return fig


def _png_matplotlib(fig: go.Figure, path: Path) -> None:
    """Render the traces of ``fig`` (boxes, markers, lines, bars) with matplotlib."""
    from matplotlib.figure import Figure

    m = Figure(figsize=(9, 5), dpi=110)
    ax = m.add_subplot()
    lay = fig.layout
    boxes = [t for t in fig.data if t.type == "box"]
    if boxes:
        cats = list(lay.xaxis.categoryarray or dict.fromkeys(c for t in boxes for c in t.x))
        width = 0.8 / len(boxes)
        for j, t in enumerate(boxes):
            data = [[y for x, y in zip(t.x, t.y) if x == c] for c in cats]
            pos = [i - 0.4 + width * (j + 0.5) for i in range(len(cats))]
            keep = [(p, d) for p, d in zip(pos, data) if d]
            if keep:
                bp = ax.boxplot([d for _, d in keep], positions=[p for p, _ in keep], widths=width * 0.9,
                                patch_artist=True, manage_ticks=False)
                for patch in bp["boxes"]:
                    patch.set_facecolor(t.marker.color or "C0")
            ax.plot([], [], color=t.marker.color or "C0", label=t.name, linewidth=6)
        ax.set_xticks(range(len(cats)), cats, rotation=30)
    bars = [t for t in fig.data if t.type == "bar"]
    for j, t in enumerate(bars):
        w = 0.8 / len(bars)
        ax.bar([i - 0.4 + w * (j + 0.5) for i in range(len(t.x))], [y if y is not None else 0 for y in t.y],
               width=w, label=t.name)
        ax.set_xticks(range(len(t.x)), list(t.x), rotation=60, ha="right", fontsize=7)
    for t in fig.data:
        if t.type == "scatter":
            style = "--" if t.mode == "lines" else "o"
            ax.plot(t.x, t.y, style, label=t.name, markersize=3, color="grey" if t.mode == "lines" else None)
    if lay.xaxis.type == "log":
        ax.set_xscale("log")
    if lay.yaxis.type == "log":
        ax.set_yscale("log")
    ax.set_title(lay.title.text or "", fontsize=10)
    ax.set_xlabel(lay.xaxis.title.text or "")
    ax.set_ylabel(lay.yaxis.title.text or "")
    ax.legend(fontsize=6, ncol=2)
    m.tight_layout()
    m.savefig(path)


def save_figure(fig: go.Figure, stem: Path) -> dict[str, str]:
    """Write ``stem.json`` (Plotly) and ``stem.png``; returns both file names and the PNG renderer."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(pio.to_json(fig))
    png = stem.with_suffix(".png")
    try:
        import importlib

        importlib.import_module("kaleido")
        fig.write_image(str(png), width=900, height=500)
        renderer = "kaleido"
    except Exception:  # kaleido missing or without a browser: matplotlib draws the same data
        _png_matplotlib(fig, png)
        renderer = "matplotlib"
    return {"json": stem.with_suffix(".json").name, "png": png.name, "png_renderer": renderer}


def write_plots(report: dict[str, Any], real: list[dict], syn: list[dict], out: Path,
                progress: Progress | None = None) -> dict[str, dict[str, str]]:
    """Every figure of the report into ``out``; returns name -> files (relative to ``out``'s parent).
    ``progress(done, total, figure name)`` after each figure."""
    metrics = report["metrics"]
    figs = {f"conditioning_{k[:-2]}": conditioning_figure(k, metrics[k]) for k in CHECK_TITLES if k in metrics}
    figs["organ_volumes"] = volume_figure(real, syn, metrics.get("organ_volume_corr", {}).get("value"))
    figs["dice_per_class"] = dice_figure(metrics)
    done = {}
    for i, (name, fig) in enumerate(figs.items()):
        files = save_figure(fig, out / name)
        done[name] = {k: (f"{out.name}/{v}" if k != "png_renderer" else v) for k, v in files.items()}
        if progress is not None:
            progress(i + 1, len(figs), name)
    return done


def load_figures(report_dir: str | Path, report: dict[str, Any]) -> dict[str, go.Figure]:
    """The Plotly figures listed in a report, read from ``report_dir`` (missing files are skipped)."""
    out = {}
    for name, files in (report.get("plots") or {}).items():
        p = Path(report_dir) / files["json"]
        if p.exists():
            out[name] = pio.from_json(p.read_text())
    return out
