"""Example coronal slices of a trial's images, kept in the trial directory for the report and the app.

    DIR/examples/index.json      one record per example (file, patient, population, sample type, slice)
    DIR/examples/NN_<type>_<id>.npz
        hu           (rows, cols) int16 HU, rows = superior (row 0) -> inferior, cols = patient right
                     (col 0) -> left: :func:`vctcore.render.slice_2d`'s coronal layout
        seg          (rows, cols) uint8, the 16 merged classes (:data:`vctcore.labels.MERGED_CLASSES`)
        spacing_mm   (2,) float: (row spacing, column spacing) in mm
        slice_index  the coronal slice (voxel index along Y, the A-P axis) through the body's centroid
        patient_id, source_id, population, sample_type, plane   strings

Per population, the same few source patients are shown in every sample type (a real patient, its
reconstruction, a synthetic patient conditioned on its attributes), so the report can set them side
by side. An image that cannot be read is left out and named under ``skipped`` in ``index.json``; the
trial does not fail for it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vctcore.cohort import _atomic_text

EXAMPLES, INDEX = "examples", "index.json"
#: the order in which sample types are shown
SAMPLE_ORDER = ("real", "reconstructed", "synthetic")
#: HU above this inside the volume counts as body when locating the slice
BODY_HU = -500.0


def choose_examples(images: pd.DataFrame, per_population: int = 2) -> pd.DataFrame:
    """The rows of an image table to show: per population, the first ``per_population`` source patients
    (real patients when the trial has them, else source ids, in sorted order) and, for each of them,
    the first image (by ``patient_id``) of every sample type in :data:`SAMPLE_ORDER`.

    ``images`` needs ``patient_id``, ``source_id``, ``population``, ``sample_type`` and ``image_dir``
    (a trial's predictions table has them).
    Returns the chosen rows in display order (population, source, sample type).
    """
    rows = []
    order = {s: k for k, s in enumerate(SAMPLE_ORDER)}
    shown = images[images["sample_type"].isin(SAMPLE_ORDER)]
    for pop in dict.fromkeys(shown["population"]):
        g = shown[shown["population"] == pop].sort_values("patient_id")
        real = g[g["sample_type"] == "real"]
        anchors = sorted(set(real["patient_id"] if len(real) else g["source_id"]))[:per_population]
        for src in anchors:
            for stype, h in sorted(g[g["source_id"] == src].groupby("sample_type"), key=lambda t: order[t[0]]):
                rows.append(h.iloc[0])
    return pd.DataFrame(rows).reset_index(drop=True) if rows else images.iloc[:0]


def coronal_example(image_dir: Path) -> dict[str, Any]:
    """The coronal slice through the body's centroid of ``image_dir/ct.nii.gz`` and ``seg.nii.gz``:
    ``hu`` (int16), ``seg`` (uint8), ``spacing_mm`` (row, col) and ``slice_index``."""
    from vctcore.render import slice_2d
    from vctcore.volume import read_ct, read_labels

    ct = read_ct(Path(image_dir) / "ct.nii.gz")
    seg = read_labels(Path(image_dir) / "seg.nii.gz", like=ct)
    weight = (np.asarray(ct.data) > BODY_HU).sum(axis=(0, 2)).astype(float)
    j = int(round(float((np.arange(weight.size) * weight).sum() / weight.sum()))) if weight.sum() else weight.size // 2
    sx, _, sz = ct.spacing_mm
    hu = np.clip(np.rint(slice_2d(np.asarray(ct.data, np.float32), "coronal", j)), -1024, 3071).astype(np.int16)
    return {"hu": hu, "seg": slice_2d(np.asarray(seg.data), "coronal", j).astype(np.uint8),
            "spacing_mm": np.array([sz, sx], float), "slice_index": j}


def _file_name(k: int, stype: str, patient_id: str) -> str:
    return f"{k:02d}_{stype}_{re.sub(r'[^A-Za-z0-9._-]+', '-', patient_id)}.npz"


def write_examples(out: str | Path, images: pd.DataFrame, *, per_population: int = 2) -> Path:
    """Write the example slices of ``images`` (an image table, see :func:`choose_examples`) under
    ``out/examples``; returns the index path. Files of an earlier run not in the new index are removed."""
    folder = Path(out) / EXAMPLES
    folder.mkdir(parents=True, exist_ok=True)
    records, skipped = [], []
    for k, r in enumerate(choose_examples(images, per_population).itertuples()):
        meta = {"patient_id": str(r.patient_id), "source_id": str(r.source_id), "population": str(r.population),
                "sample_type": str(r.sample_type), "plane": "coronal"}
        try:
            ex = coronal_example(Path(r.image_dir))
        except (OSError, ValueError) as err:
            skipped.append({**meta, "reason": str(err).splitlines()[0]})
            continue
        name = _file_name(k, meta["sample_type"], meta["patient_id"])
        tmp = folder / f".{name}.tmp.npz"
        np.savez_compressed(tmp, **ex, **{key: np.str_(v) for key, v in meta.items()})
        tmp.replace(folder / name)
        records.append({"file": name, **meta, "slice_index": ex["slice_index"],
                        "spacing_mm": [float(v) for v in ex["spacing_mm"]]})
    keep = {rec["file"] for rec in records}
    for old in folder.glob("*.npz"):
        if old.name not in keep:
            old.unlink()
    index = folder / INDEX
    _atomic_text(index, json.dumps({"examples": records, "skipped": skipped}, indent=2))
    return index


def read_examples(trial_dir: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(examples, skipped) of a trial directory: each example is its index record with ``hu``, ``seg``
    and ``spacing_mm`` arrays loaded. ``([], [])`` when the trial has no examples."""
    folder = Path(trial_dir) / EXAMPLES
    if not (folder / INDEX).is_file():
        return [], []
    index = json.loads((folder / INDEX).read_text())
    out = []
    for rec in index.get("examples", []):
        path = folder / rec["file"]
        if not path.is_file():
            continue
        with np.load(path, allow_pickle=False) as z:
            out.append({**rec, "hu": z["hu"], "seg": z["seg"], "spacing_mm": z["spacing_mm"]})
    return out, list(index.get("skipped", []))
