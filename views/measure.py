"""Measure a CT: upload a real scan (NIfTI, or a DICOM series as a folder, a zip or its files) and see what
vct measures from it, and why it refuses what it refuses."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from views._slices import init_view_state, slice_views
from vctcore import render
from vctcore.measure.record import SCAN_LABELS
from vctcore.measure.uploads import measure_upload

#: source kind -> (radio label, uploader label, accepted suffixes or None, accept_multiple_files)
SOURCES: dict[str, tuple[str, str, list[str] | None, bool | str]] = {
    "nifti": ("NIfTI file", "CT in HU (.nii or .nii.gz)", ["nii", "nii.gz"], False),
    "folder": ("DICOM folder", "A folder holding one DICOM CT series", None, "directory"),
    "files": ("DICOM zip or files", "A .zip of one DICOM CT series, or all the files of the series", None, True),
}
DEFAULTS: dict[str, Any] = {"ms_kind": "nifti", "ms_force": False, "ms_result": None}


def init_state() -> None:
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)


def uploaded(value: Any) -> list[tuple[str, bytes]]:
    """The uploader's value as ``(name, content)`` pairs (a folder upload keeps each file's relative name)."""
    files = value if isinstance(value, list) else ([value] if value is not None else [])
    return [(f.name, f.getvalue()) for f in files]


def measured(files: list[tuple[str, bytes]], seg: tuple[str, bytes] | None, force: bool) -> dict[str, Any]:
    """The measurement of these uploads, kept in the session for as long as the same uploads are shown
    (a volume is too large to copy through st.cache_data on every rerun)."""
    key = (tuple((name, len(content), hash(content)) for name, content in files),
           None if seg is None else (seg[0], hash(seg[1])), force)
    result = st.session_state["ms_result"]
    if result is None or result["key"] != key:
        try:
            with st.spinner("Reading and measuring the CT…"):
                ct, m = measure_upload(files, seg=seg, force=force)
            result = {"key": key, "error": None, "ct": ct.data, "spacing_mm": ct.spacing_mm, "m": m}
        except ValueError as err:  # NiftiError, DicomError, MeasureError: one line naming the upload
            result = {"key": key, "error": str(err)}
        st.session_state["ms_result"] = result
    return result


def results(m) -> None:
    """The measured quantities, what each could not be measured for, and the notes."""
    rows = [{"quantity": label, "value": None if value is None else round(float(value), 2), "unit": unit,
             "not measured because": why} for label, value, unit, why in m.summary_rows()]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    cov = m.coverage
    st.caption(f"Backend **{m.backend}** (labels: {m.vocabulary}); grid {m.shape} at "
               f"{' x '.join(f'{s:g}' for s in m.spacing_mm)} mm; "
               f"{'whole body' if cov.get('whole_body') else 'partial scan'}, body extent "
               f"{cov.get('body_extent_cm', 0):.1f} cm.")
    if m.scan_volume_l:
        st.markdown("**Within the scan** (L): " + ", ".join(f"{SCAN_LABELS.get(k, k).replace('_', ' ')} {v:.2f}"
                                                            for k, v in m.scan_volume_l.items()))
    for w in m.warnings:
        st.warning(w)
    with st.expander("Notes"):
        for n in m.notes:
            st.markdown(f"- {n}")


st.title("Measure a CT")
st.caption("Upload a CT of a person and see what vct measures from it: body mass, fat, muscle, bone, body volume, "
           "height, bone density and L3-level areas, each only where the scan and the labels allow. Images that "
           "are not CT in Hounsfield units, or whose voxel spacing no scanner makes, are refused with the reason. "
           "Without a segmentation, HU thresholds cannot tell skeletal muscle from organs, so muscle is not "
           "measured and soft tissue (-29..150 HU) is shown instead.")
init_state()

left, right = st.columns([1.4, 3.6], gap="large")
with left, st.container(border=True):
    kind = st.radio("What you upload", list(SOURCES), format_func=lambda k: SOURCES[k][0], key="ms_kind")
    _, label, types, multiple = SOURCES[kind]
    files = uploaded(st.file_uploader(label, type=types, accept_multiple_files=multiple, key=f"ms_up_{kind}"))
    seg_file = st.file_uploader("Segmentation (optional): a NIfTI label map on the CT's grid (fine, merged "
                                "16-class or TotalSegmentator labels); it identifies muscle", type=["nii", "nii.gz"],
                                key="ms_seg")
    st.checkbox("Measure even if it does not look like CT in HU", key="ms_force",
                help="For a CT cropped inside the body, which has no air background. The numbers of an image "
                     "that is not CT in HU mean nothing. A voxel spacing outside 0.1-20 mm is refused even so.")

with right:
    if not files:
        st.info("Upload a CT on the left: a NIfTI file, a folder holding one DICOM series, or a .zip of a series "
                "(or all its files).")
        st.stop()
    seg = uploaded(seg_file)
    result = measured(files, seg[0] if seg else None, bool(st.session_state["ms_force"]))
    if result["error"]:
        st.error(f"Not measured: {result['error']}")
        st.stop()
    results(result["m"])

init_view_state("ms")  # the CT below both columns: the slice viewer needs the page's width
window = st.radio("HU window", list(render.WINDOWS), horizontal=True, key="ms_window",
                  format_func=lambda n: f"{n} W{render.WINDOWS[n][1]:.0f} L{render.WINDOWS[n][0]:.0f}")
level, width = render.WINDOWS[window]
slice_views("ms", result["ct"], np.zeros(result["ct"].shape, np.uint8), result["spacing_mm"], result["key"], level,
            width, 0.0)
