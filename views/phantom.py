"""Digital human: build one attribute-driven phantom and browse its CT slices with organ labels."""
from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from views._slices import slice_views, view_controls
from vctcore.attributes import ATTRIBUTES
from vctcore.phantom import SUPPORT, build_phantom

# ---------------------------------------------------------------- inputs and session state

#: attribute -> (default, step, display format); labels, units and valid ranges come from ATTRIBUTES
ATTRIBUTE_INPUTS: dict[str, tuple[float, float, str]] = {
    "age_years": (45.0, 1.0, "%.0f"),
    "height_cm": (172.0, 1.0, "%.0f"),
    "weight_kg": (75.0, 0.5, "%.1f"),
    "bfp_pct": (25.0, 0.5, "%.1f"),
    "mmp_pct": (35.0, 0.5, "%.1f"),
    "bone_density_hu": (180.0, 5.0, "%.0f"),
}
SEXES = {"F": "female", "M": "male"}
POSES = {"supine": "supine, random limb pose", "standing": "standing"}
#: report entries shown as the self-check, in this order of preference (others are provenance)
SELF_CHECK_KEYS = ("weight_kg", "bfp_pct", "mmp_pct", "height_cm", "bone_density_hu", "body_volume_l", "extent_cm")

DEFAULTS: dict[str, Any] = {
    "ph_sex": "F",
    **{f"ph_{name}": spec[0] for name, spec in ATTRIBUTE_INPUTS.items()},
    "ph_pose": "supine",
    "ph_seed": 0,
}


def label_of(name: str) -> str:
    """'Body fat (%)' from the attribute schema; unknown names as they are."""
    if name == "extent_cm":
        return "Head-to-toe extent (cm)"
    a = ATTRIBUTES.get(name)
    return f"{a.label} ({a.unit})" if a and a.unit else (a.label if a else name)


def input_range(name: str) -> tuple[float, float]:
    """Valid adult range (vctcore.attributes) narrowed to what the phantom supports."""
    a = ATTRIBUTES[name]
    lo, hi = SUPPORT.get(name, (a.low, a.high))
    return max(float(a.low), float(lo)), min(float(a.high), float(hi))


def init_state() -> None:
    """All session-state keys of this page, set once; the last build request defaults to the defaults."""
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)
    st.session_state.setdefault("ph_request", current_request())


def current_request() -> dict[str, Any]:
    """The attributes, seed and pose as the inputs show them now."""
    attrs = {"sex": st.session_state["ph_sex"]}
    attrs |= {name: float(st.session_state[f"ph_{name}"]) for name in ATTRIBUTE_INPUTS}
    return {"attrs": attrs, "seed": int(st.session_state["ph_seed"]), "pose": st.session_state["ph_pose"]}


@st.cache_data(max_entries=8, show_spinner="Building the phantom…")
def build(attrs: dict[str, Any], seed: int, pose: str) -> dict[str, Any]:
    """Build one phantom (cached on attributes + seed + pose) and keep only what the page shows."""
    p = build_phantom(attrs, seed=seed, pose=pose)
    return {
        "ct": p.ct.data,
        "seg": p.seg.data,
        "spacing_mm": tuple(float(s) for s in p.ct.spacing_mm),
        "report": dict(getattr(p, "report", None) or {}),
        "attributes": dict(p.attributes),
    }


# ---------------------------------------------------------------- page sections


def input_panel() -> None:
    """Attribute, pose and seed inputs; the button turns them into the build request."""
    st.radio("Sex", list(SEXES), format_func=SEXES.get, horizontal=True, key="ph_sex")
    names = list(ATTRIBUTE_INPUTS)
    for pair in (names[i:i + 2] for i in range(0, len(names), 2)):
        for col, name in zip(st.columns(2, vertical_alignment="bottom"), pair):
            _default, step, fmt = ATTRIBUTE_INPUTS[name]
            lo, hi = input_range(name)
            col.number_input(label_of(name), min_value=lo, max_value=hi, step=step, format=fmt, key=f"ph_{name}",
                             help=f"{ATTRIBUTES[name].description} The phantom supports {lo:g} to {hi:g}.")
    st.radio("Pose", list(POSES), format_func=POSES.get, key="ph_pose")
    st.number_input("Seed", min_value=0, max_value=2**31 - 1, step=1, key="ph_seed")
    if st.button("Build phantom", type="primary", key="ph_build", width="stretch"):
        st.session_state["ph_request"] = current_request()
    if current_request() != st.session_state["ph_request"]:
        st.caption("Inputs changed: press **Build phantom** to rebuild.")


def self_check(ph: dict[str, Any]) -> None:
    """Requested vs re-measured attributes, for whatever the phantom's self-check report holds."""
    report, requested = ph["report"], ph["attributes"]
    rows = [
        {"quantity": label_of(k), "requested": requested.get(k), "measured": float(v),
         "Δ": float(v) - float(requested[k]) if k in requested else None}
        for k, v in report.items() if k in SELF_CHECK_KEYS and isinstance(v, (int, float))
    ]
    if not rows:
        return
    st.markdown("**Self-check**: the built phantom re-measured from its own image")
    table = pd.DataFrame(rows).set_index("quantity")
    st.table(table.style.format("{:.1f}", na_rep="—"))
    if "seconds" in report:
        passes = report.get("calibration_passes")
        st.caption(f"Built in {report['seconds']:.1f} s" + (f", {passes} calibration passes." if passes else "."))


# ---------------------------------------------------------------- page

st.title("Digital human")
st.caption(
    "A procedural digital-human phantom: XCAT-style computational anatomy whose body size, composition and "
    "pose follow the attributes you set, with CT-like Hounsfield units, noise and blur. It is **not a real "
    "patient** and **not the trained generator**; it is the built-in reference cohort whose ground truth is exact."
)
init_state()

inputs, view = st.columns([1.2, 3.8], gap="large")
with inputs, st.container(border=True):
    input_panel()

with view:
    level, width, opacity = view_controls("ph")
    request = st.session_state["ph_request"]
    try:
        phantom = build(request["attrs"], request["seed"], request["pose"])
    except ValueError as err:
        st.error(f"The phantom cannot be built with these attributes: {err}")
    else:
        slice_views("ph", phantom["ct"], phantom["seg"], phantom["spacing_mm"], request, level, width, opacity,
                    below_axial=lambda: self_check(phantom))
