"""Measure every patient of a cohort directory in parallel (layout: :mod:`vctcore.cohort`).

Writes ``DIR/measurements.csv`` (one row per patient id, :meth:`Measurements.to_row` columns plus
``id`` and ``error``) and ``DIR/measurements.json`` (the :mod:`vctcore.provenance` record, backend,
``started_utc``/``finished_utc``, counts). Per patient the CT is ``ct.nii.gz``, a DICOM series folder ``ct/`` or ``ct.zip``
(:func:`vctcore.cohort.patient_ct_path`), and the segmentation is ``labels.nii.gz`` (fine labels) when
present, else ``seg.nii.gz`` (merged classes), unless the backend ignores labels. The CSV is rewritten atomically
after every patient, so an interrupted run resumes: rows already measured with the same backend are
kept and skipped when the previous run (``measurements.json``) asked for the same backend.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from vctcore.cohort import _atomic_text
from vctcore.executors import Executor
from vctcore.executors.local import LocalExecutor
from vctcore.progress import Progress
from vctcore.provenance import provenance as provenance_record
from vctcore.provenance import utc_now

CSV_NAME, JSON_NAME = "measurements.csv", "measurements.json"


def patient_ids(root: Path) -> list[str]:
    """Patient ids of a cohort: attributes.csv order, or the folders under patients/."""
    attrs = root / "attributes.csv"
    if attrs.exists():
        return [str(i) for i in pd.read_csv(attrs, dtype={"id": str})["id"]]
    if (root / "patients").is_dir():
        return sorted(p.name for p in (root / "patients").iterdir() if p.is_dir())
    raise FileNotFoundError(f"{root} is not a cohort directory (no attributes.csv and no patients/ folder)")


def measure_patient(patient_dir: str, backend: str = "auto", height: bool = True,
                    force: bool = False) -> dict[str, Any]:
    """Measure one patient folder; returns a CSV row (``error`` set instead of raising). ``force``: see
    :func:`vctcore.measure.measure`."""
    from vctcore.cohort import patient_ct_path
    from vctcore.ct_input import read_ct_input
    from vctcore.labels import FINE_LABEL_NAMES, MERGED_CLASSES
    from vctcore.measure.api import measure
    from vctcore.volume import read_labels

    d = Path(patient_dir)
    try:
        ct = read_ct_input(patient_ct_path(d))
        seg = None
        if backend in ("auto", "labels"):
            if (d / "labels.nii.gz").exists():
                seg = read_labels(d / "labels.nii.gz", names=dict(FINE_LABEL_NAMES), like=ct)
            elif (d / "seg.nii.gz").exists():
                seg = read_labels(d / "seg.nii.gz", names=dict(MERGED_CLASSES), like=ct)
        m = measure(ct, seg, backend, height=height, force=force)
        return {"id": d.name, **m.to_row(), "error": ""}
    except (ValueError, OSError) as err:
        return {"id": d.name, "backend": backend, "error": f"{type(err).__name__}: {err}"}


def _measure_task(_: None, task: tuple[str, str, bool, bool]) -> dict[str, Any]:
    """:func:`measure_patient` as an executor task."""
    return measure_patient(*task)


def measure_cohort(root: str | os.PathLike, *, backend: str = "auto", workers: int = 1, resume: bool = True,
                   height: bool = True, progress: Progress | None = None, force: bool = False,
                   executor: Executor | None = None) -> pd.DataFrame:
    """Measure all patients of cohort ``root`` with ``executor`` (default: ``workers`` local processes);
    returns the table written (rows in the cohort's order whatever order they finish in). ``force``:
    measure images that do not look like CT in HU (see :func:`vctcore.measure.measure`)."""
    root = Path(root).resolve()
    executor = executor or LocalExecutor(workers)
    ids = patient_ids(root)
    if not ids:
        raise ValueError(f"cohort {root} has no patients")
    csv_path = root / CSV_NAME
    rows: dict[str, dict[str, Any]] = {}
    if resume and csv_path.exists() and _previous_backend(root) == backend:
        old = pd.read_csv(csv_path, dtype={"id": str}, keep_default_na=False)
        if "error" in old:
            for rec in old.to_dict("records"):
                if not rec.get("error") and rec["id"] in ids:
                    rows[rec["id"]] = rec
    todo = [i for i in ids if i not in rows]
    provenance: dict[str, Any] = {
        "maker": "vctcore.measure", "backend": backend, **provenance_record(), "started_utc": utc_now(),
        "finished_utc": None, "patients": len(ids), "measured_now": len(todo), "resumed": len(ids) - len(todo),
        "workers": executor.workers, "executor": executor.describe(), "force": force}
    _atomic_text(root / JSON_NAME, json.dumps(provenance, indent=2))
    done = len(rows)
    if progress:
        progress(done, len(ids), "resumed" if done else "")

    def record(row: dict[str, Any]) -> None:
        nonlocal done
        rows[row["id"]] = row
        done += 1
        _write_csv(csv_path, ids, rows)
        if progress:
            progress(done, len(ids), row["id"])

    tasks = [(str(root / "patients" / i), backend, height, force) for i in todo]
    for _, row in executor.map(_measure_task, tasks):
        record(row)
    table = _write_csv(csv_path, ids, rows)
    failed = int((table["error"].astype(str) != "").sum()) if "error" in table else 0
    provenance.update(finished_utc=utc_now(), failed=failed)
    _atomic_text(root / JSON_NAME, json.dumps(provenance, indent=2))
    return table


def _previous_backend(root: Path) -> str | None:
    try:
        return json.loads((root / JSON_NAME).read_text()).get("backend")
    except (OSError, ValueError):
        return None


def _write_csv(path: Path, ids: list[str], rows: dict[str, dict[str, Any]]) -> pd.DataFrame:
    table = pd.DataFrame([rows[i] for i in ids if i in rows])
    cols = ["id"] + [c for c in table.columns if c not in ("id", "error")] + ["error"]
    table = table.reindex(columns=cols)
    _atomic_text(path, table.to_csv(index=False))
    return table
