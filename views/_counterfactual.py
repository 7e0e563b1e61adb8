"""The viewer's counterfactual pairs: the same synthetic patient (same seed) with one attribute changed, side by
side with a difference map and the change in every measured quantity (:mod:`vctcore.counterfactual`).

Two sources: a patient of a synthetic cohort (its seed, index, steps and guidance from cohort.json, so the
"before" image is that patient again) or free-form attributes. Results live in this session only
(``vw_cf_results``, keyed per request; the last two are kept).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from vctcore import render
from vctcore.assets import default_generator
from vctcore.attributes import ATTRIBUTES, CONDITIONING_ATTRIBUTES
from vctcore.workspace import CohortInfo

SEXES = {"F": "female", "M": "male"}
FREE_DEFAULTS = {"sex": "M", "age_years": 45.0, "height_cm": 178.0, "weight_kg": 70.0}
FORMATS = {"age_years": "%.0f", "height_cm": "%.0f"}  # others: one decimal
#: default change per attribute (clipped to its valid range): weight 70 -> 100 kg and so on
DEFAULT_DELTA = {"age_years": 30.0, "height_cm": 15.0, "weight_kg": 30.0}
KEEP_RESULTS = 2
PIXEL_MM = 3.0
DIFF_MIN_HU = 100.0  # the difference map's colour range is at least +-100 HU
NUMBER = st.column_config.NumberColumn(format="%.1f")


def generator_path(info: CohortInfo | None) -> Path:
    """The checkpoint that made a synthetic cohort (when still there), else $VCT_GENERATOR or the shipped one."""
    made_by = (info.provenance.get("checkpoint") if info is not None and info.maker == "vctcore.generator" else None)
    if made_by and (Path(made_by) / "config.json").exists():
        return Path(made_by)
    return default_generator()


def read_sampling(path: Path) -> tuple[tuple[str, ...], int] | None:
    """(conditioned attributes, default steps) from the checkpoint's config.json; None when unreadable."""
    try:
        diffusion = json.loads((path / "config.json").read_text()).get("diffusion", {})
    except (OSError, json.JSONDecodeError):
        return None
    return tuple(diffusion.get("condition_on", CONDITIONING_ATTRIBUTES)), int(diffusion.get("sample_steps", 50))


@st.cache_resource(show_spinner="Loading the generator…")
def load_generator(path: str) -> Any:
    from vctcore.generator import Generator

    return Generator.from_pretrained(path, device="auto")


def _ensure(key: str, value: Any, options: list | None = None) -> None:
    """Set a widget's session value before it is drawn: when missing, or no longer among ``options``."""
    if key not in st.session_state or (options is not None and st.session_state[key] not in options):
        st.session_state[key] = value


def _patient_request(info: CohortInfo, pid: str, row: pd.Series, index: int, names: tuple[str, ...]) -> dict[str, Any]:
    prov = info.provenance
    attrs = {k: (row[k].item() if hasattr(row[k], "item") else row[k]) for k in names if k in row and pd.notna(row[k])}
    st.caption(f"**Before** is patient {pid} of `{info.name}` again: "
               f"cohort seed {prov.get('seed', 0)}, patient index {index}, {prov.get('steps', 'default')} steps, "
               f"guidance {prov.get('guidance_scale', 'default')}.")
    return {"attributes": attrs, "seed": int(prov.get("seed", 0)), "index_offset": int(index),
            "steps": prov.get("steps"), "guidance_scale": prov.get("guidance_scale"), "sampler": prov.get("sampler")}


def _free_request(row: pd.Series | None, names: tuple[str, ...], default_steps: int) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    cols = st.columns(len(names) + 2)
    for col, name in zip(cols, names):
        a = ATTRIBUTES[name]
        start = row[name] if row is not None and name in row and pd.notna(row[name]) else FREE_DEFAULTS.get(name)
        key = f"vw_cf_{name}"
        if a.is_categorical:
            _ensure(key, start if start in a.categories else a.categories[0], list(a.categories))
            attrs[name] = col.radio(a.label, list(a.categories), key=key, format_func=lambda s: SEXES.get(s, s))
        else:
            _ensure(key, float(start if start is not None else (a.low + a.high) / 2))
            attrs[name] = col.number_input(f"{a.label} ({a.unit})", float(a.low), float(a.high), key=key,
                                           format=FORMATS.get(name, "%.1f"))
    _ensure("vw_cf_seed", 0)
    seed = cols[-2].number_input("Seed", 0, 2**31 - 1, key="vw_cf_seed")
    _ensure("vw_cf_steps", default_steps)
    steps = cols[-1].number_input("Steps", 1, 200, key="vw_cf_steps", help="Sampler steps (fewer: faster, rougher)")
    return {"attributes": attrs, "seed": int(seed), "index_offset": 0, "steps": int(steps), "guidance_scale": None,
            "sampler": None}


def _change_input(attrs: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    c1, c2 = st.columns(2)
    _ensure("vw_cf_attr", "weight_kg" if "weight_kg" in names else names[0], list(names))
    name = c1.selectbox("Change", list(names), key="vw_cf_attr", format_func=lambda n: ATTRIBUTES[n].label)
    a, key = ATTRIBUTES[name], f"vw_cf_to_{name}"
    now = attrs.get(name)
    if a.is_categorical:
        other = [c for c in a.categories if c != now] or list(a.categories)
        _ensure(key, other[0], list(a.categories))
        value = c2.radio("to", list(a.categories), key=key, format_func=lambda s: SEXES.get(s, s), horizontal=True)
    else:
        base = float(now) if now is not None else float(FREE_DEFAULTS.get(name, a.low))
        _ensure(key, float(min(a.high, base + DEFAULT_DELTA.get(name, 0.0))))
        value = c2.number_input(f"to ({a.unit})", float(a.low), float(a.high), key=key,
                                format=FORMATS.get(name, "%.1f"))
    return {name: value}


def _shown(value: Any) -> str:
    """An attribute value for a caption: numbers to one decimal, categories as they are."""
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def _remember(key: tuple, result: dict[str, Any]) -> None:
    results = st.session_state["vw_cf_results"]
    results[key] = result
    for old in list(results)[:-KEEP_RESULTS]:
        del results[old]
    st.session_state["vw_cf_shown"] = key


def _build(path: Path, request: dict[str, Any], change: dict[str, Any], key: tuple) -> None:
    from vctcore.counterfactual import counterfactual_pair

    gen = load_generator(str(path))
    bar = st.progress(0.0, text="Generating…")
    t = time.perf_counter()
    with st.spinner("Generating the pair: two patients from the same seed…"):
        pair = counterfactual_pair(gen, request["attributes"], change, request["seed"], request["steps"],
                                   guidance_scale=request["guidance_scale"], sampler=request["sampler"],
                                   index_offset=request["index_offset"],
                                   progress=lambda d, n, what: bar.progress(d / n, text=what))
    bar.empty()
    (name, value), = change.items()
    _remember(key, {
        "before": (pair.before.ct.data, pair.before.seg.data), "after": (pair.after.ct.data, pair.after.seg.data),
        "diff_hu": pair.diff.hu, "changes": pair.diff.changes,
        "spacing_mm": tuple(float(s) for s in pair.before.ct.spacing_mm),
        "labels": tuple(f"{ATTRIBUTES[name].label} {_shown(v)} {ATTRIBUTES[name].unit or ''}".strip()
                        for v in (request["attributes"].get(name), value)),
        "seconds": time.perf_counter() - t})


def _diff_image(diff: np.ndarray, plane: str, index: int,
                spacing: tuple[float, float, float]) -> tuple[np.ndarray, float]:
    """The difference slice on the diverging map, displayed like the CT slices, and its colour limit (HU)."""
    from vctcore.counterfactual import difference_rgb

    img = render.resample_for_display(render.slice_2d(diff, plane, index), spacing, plane, pixel_mm=PIXEL_MM, order=1)
    lim = max(DIFF_MIN_HU, float(np.percentile(np.abs(diff), 99.5)))
    return difference_rgb(img, lim), lim


def _colour_scale(lim: float) -> str:
    from vctcore.counterfactual import DIVERGING_HEX

    gradient = f"linear-gradient(to right,{','.join(DIVERGING_HEX)})"
    return (f'<div style="height:.7em;border-radius:2px;background:{gradient}"></div>'
            f'<div style="display:flex;justify-content:space-between;font-size:.8em;color:#666">'
            f'<span>−{lim:.0f} HU</span><span>0</span><span>+{lim:.0f} HU</span></div>')


def show_pair(key: tuple, result: dict[str, Any]) -> None:
    """Before and after side by side in one plane, the HU difference map, and the change table."""
    spacing = result["spacing_mm"]
    c1, c2, c3 = st.columns([2, 1, 1], vertical_alignment="bottom")
    plane = c1.radio("Plane", list(render.PLANES), index=1, key="vw_cf_plane", horizontal=True)
    labels_on = c2.toggle("Organ labels", key="vw_cf_labels")
    seg = result["before"][1]
    n = seg.shape[render.PLANE_AXIS[plane]]
    if st.session_state.get("vw_cf_slice_for") != (key, plane) or not 0 <= st.session_state.get("vw_cf_slice", -1) < n:
        st.session_state["vw_cf_slice"] = render.default_slices(seg)[plane]
    st.session_state["vw_cf_slice_for"] = (key, plane)
    index = c3.slider("Slice", 0, n - 1, key="vw_cf_slice")
    level, width = render.WINDOWS["soft tissue"]
    cols = st.columns(3, vertical_alignment="top")
    for col, (ct, s), caption in zip(cols, (result["before"], result["after"]), result["labels"]):
        col.image(render.render_slice(ct, plane, index, spacing_mm=spacing, level=level, width=width, labels=s,
                                      opacity=0.35 if labels_on else 0.0, pixel_mm=PIXEL_MM),
                  caption=f"{caption}", width="stretch")
    diff_img, lim = _diff_image(result["diff_hu"], plane, index, spacing)
    cols[2].image(diff_img, caption="Difference, after − before", width="stretch")
    cols[2].html(_colour_scale(lim))
    st.dataframe(result["changes"], key="vw_cf_table", hide_index=True, width="stretch",
                 column_config={c: NUMBER for c in ("before", "after", "change")})
    st.caption(f"Both images measured the same way (as the trial measures every image); organ volumes from each "
               f"image's own segmentation. Built in {result['seconds']:.0f} s. Difference map: red where the image "
               "is brighter after the change, blue where darker.")


@st.fragment
def counterfactual_section(info: CohortInfo | None, pid: str | None, row: pd.Series | None, index: int | None) -> None:
    """Inputs, the build button and the latest pair of this session (reruns on its own). ``info``, ``pid``,
    ``row`` (attributes.csv row) and ``index`` (its position there): the selected patient, or None."""
    st.session_state.setdefault("vw_cf_results", {})
    path = generator_path(info)
    sampling = read_sampling(path)
    if sampling is None:
        st.error(f"No usable generator checkpoint at {path}: counterfactual pairs need one (set VCT_GENERATOR "
                 "or train one with `vct train`).")
        return
    names, default_steps = sampling
    synthetic = info is not None and info.maker == "vctcore.generator" and row is not None
    modes = ["This patient", "Free-form"] if synthetic else ["Free-form"]
    cohort = info.name if info is not None else None
    if st.session_state.get("vw_cf_mode_for") != cohort:  # another cohort starts from its own first mode
        st.session_state.pop("vw_cf_mode", None)
    st.session_state["vw_cf_mode_for"] = cohort
    _ensure("vw_cf_mode", modes[0], modes)
    mode = st.radio("Start from", modes, key="vw_cf_mode", horizontal=True,
                    help="This patient: the selected synthetic patient again (its seed) and with the change. "
                         "Free-form: any attributes and seed.")
    if mode == "This patient":
        request = _patient_request(info, str(pid), row, int(index), names)
    else:
        request = _free_request(row, names, default_steps)
    change = _change_input(request["attributes"], names)
    key = (str(path), tuple(sorted((k, str(v)) for k, v in request["attributes"].items())),
           tuple((k, str(v)) for k, v in change.items()), request["seed"], request["index_offset"], request["steps"],
           request["guidance_scale"], request["sampler"])
    if st.button("Build the pair", key="vw_cf_go", type="primary",
                 help="Generates two patients and measures both (about a minute on 2 CPU cores at the shipped "
                      "generator's 15 steps, seconds on a GPU)"):
        if key not in st.session_state["vw_cf_results"]:
            try:
                _build(path, request, change, key)
            except ValueError as err:
                st.error(str(err))
                return
        st.session_state["vw_cf_shown"] = key
    shown = st.session_state.get("vw_cf_shown")
    if shown in st.session_state["vw_cf_results"]:
        if shown != key:
            st.caption("Showing the last pair built; press **Build the pair** for the settings above.")
        show_pair(shown, st.session_state["vw_cf_results"][shown])
