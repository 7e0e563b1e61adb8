"""Slice viewer shared by the pages that show a CT volume: window presets, organ overlay, three planes.

Session-state keys are prefixed per page (``<prefix>_window``, ``<prefix>_slice_axial``, ...). A page that
lets the user hide classes calls :func:`class_toggles` and passes its result to :func:`slice_views`.
"""
from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import numpy as np
import streamlit as st

from vctcore import render

PLANE_CAPTIONS = {
    "axial": "Axial, seen from the feet: patient right on image left, anterior up",
    "coronal": "Coronal: patient right on image left",
    "sagittal": "Sagittal: anterior on image left",
}
DISPLAY_HEIGHT_PX = 500  # coronal and sagittal images share this height (at most)
SIDE_WIDTH_PX = 560  # coronal and sagittal together at most this wide: a short slab shows them lower
AXIAL_WIDTH_PX = 500  # column weight of the axial view (the image stretches to its column)
PIXEL_MM = 3.0  # display resampling: square 3 mm pixels
VIEW_DEFAULTS: dict[str, Any] = {"window": "soft tissue", "overlay": True, "opacity": 0.4, "slices_for": None}


def init_view_state(prefix: str) -> None:
    for key, value in VIEW_DEFAULTS.items():
        st.session_state.setdefault(f"{prefix}_{key}", value)


def view_controls(prefix: str) -> tuple[float, float, float]:
    """Window preset and overlay controls -> (level, width, opacity)."""
    init_view_state(prefix)
    c1, c2, c3 = st.columns([3.2, 1, 1.6], vertical_alignment="bottom")
    preset = c1.radio("HU window", list(render.WINDOWS), horizontal=True, key=f"{prefix}_window",
                      format_func=lambda n: f"{n} W{render.WINDOWS[n][1]:.0f} L{render.WINDOWS[n][0]:.0f}")
    overlay = c2.toggle("Organ labels", key=f"{prefix}_overlay")
    opacity = c3.slider("Label opacity", 0.0, 1.0, step=0.05, key=f"{prefix}_opacity", disabled=not overlay)
    level, width = render.WINDOWS[preset]
    return level, width, (opacity if overlay else 0.0)


def class_toggles(prefix: str, seg: np.ndarray, shown: Any) -> set[int]:
    """One toggle per merged class present in ``seg`` (``<prefix>_classes``): the classes the overlay shows.

    Every class is on when a new volume (``shown``) opens."""
    entries = render.legend_entries(np.unique(seg))
    values = [v for v, _, _ in entries]
    key, for_key = f"{prefix}_classes", f"{prefix}_classes_for"
    if st.session_state.get(for_key) != shown or not set(st.session_state.get(key) or []) <= set(values):
        st.session_state[key] = values
    st.session_state[for_key] = shown
    names = {v: name for v, name, _ in entries}
    picked = st.pills("Organ classes in the overlay", values, selection_mode="multi", key=key, format_func=names.get,
                      help="Click a class to hide or show it in the slices")
    return set(picked or [])


def _reset_slices(prefix: str, seg: np.ndarray, shown: Any) -> None:
    """A newly shown volume starts on its own default slices (liver level, midline); else keep the user's."""
    fresh = st.session_state[f"{prefix}_slices_for"] != shown
    keys = {plane: f"{prefix}_slice_{plane}" for plane in render.PLANES}
    if fresh or any(not 0 <= st.session_state.get(key, -1) < seg.shape[render.PLANE_AXIS[plane]]
                    for plane, key in keys.items()):
        for plane, index in render.default_slices(seg).items():
            st.session_state[keys[plane]] = index
    st.session_state[f"{prefix}_slices_for"] = shown


def slice_views(prefix: str, ct: np.ndarray, seg: np.ndarray, spacing: tuple[float, float, float], shown: Any,
                level: float, width: float, opacity: float, below_axial: Callable[[], None] | None = None,
                classes: Collection[int] | None = None) -> None:
    """Axial (large, with the legend below) beside coronal and sagittal at a common height.

    ``shown`` identifies the volume (slices reset to defaults when it changes). ``classes``: the merged
    classes the overlay and the legend show (default: all).
    """
    colours = {v: rgb for v, rgb in render.MERGED_COLOURS.items() if classes is None or v in classes}
    init_view_state(prefix)
    _reset_slices(prefix, seg, shown)
    images = {
        plane: render.render_slice(ct, plane, st.session_state[f"{prefix}_slice_{plane}"], spacing_mm=spacing,
                                   level=level, width=width, labels=seg, colours=colours, opacity=opacity,
                                   pixel_mm=PIXEL_MM)
        for plane in render.PLANES
    }
    aspect = {p: images[p].shape[1] / images[p].shape[0] for p in ("coronal", "sagittal")}
    height = min(DISPLAY_HEIGHT_PX, SIDE_WIDTH_PX / sum(aspect.values()))
    px = {p: max(1, round(height * a)) for p, a in aspect.items()}
    cols = dict(zip(render.PLANES, st.columns([AXIAL_WIDTH_PX, px["coronal"], px["sagittal"]], gap="medium")))
    for plane, col in cols.items():
        with col:
            st.image(images[plane], caption=PLANE_CAPTIONS[plane], width=px.get(plane, "stretch"))
            n = ct.shape[render.PLANE_AXIS[plane]]
            mm = spacing[render.PLANE_AXIS[plane]]
            st.slider(f"{plane.capitalize()} slice", 0, n - 1, key=f"{prefix}_slice_{plane}",
                      help=f"Voxel index along the {plane} axis, {mm:g} mm per step")
    with cols["axial"]:
        legend(seg, opacity, classes)
        if below_axial is not None:
            below_axial()


def legend(seg: np.ndarray, opacity: float, classes: Collection[int] | None = None) -> None:
    """Colour chips of the merged classes present in ``seg`` (only ``classes`` if given; nothing while labels
    are hidden)."""
    if opacity == 0 or (classes is not None and not classes):
        return
    st.markdown("**Organ classes in this volume**")
    chips = [
        f'<span style="display:inline-flex;align-items:center;gap:.35em;margin:0 1em .2em 0;font-size:.85em">'
        f'<span style="width:.9em;height:.9em;border-radius:2px;background:{hexcol}"></span>{name}</span>'
        for value, name, hexcol in render.legend_entries(np.unique(seg))
        if classes is None or value in classes
    ]
    st.markdown(f'<div style="display:flex;flex-wrap:wrap">{"".join(chips)}</div>', unsafe_allow_html=True)
