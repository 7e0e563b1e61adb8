"""Cohorts on disk: one layout for phantom, generated and real cohorts.

    DIR/cohort.json                 provenance: what made it, seeds, config, and the record of
                                    :func:`vctcore.provenance.provenance` (time, versions, machine)
    DIR/attributes.csv              one row per patient: id + every attribute
    DIR/patients/<id>/ct.nii.gz     CT in HU (int16), canonical RAS+; a real cohort may hold its CT as
                                    ct/ (a folder holding one DICOM series) or ct.zip instead
                                    (:func:`patient_ct_path`; read by `vct measure --cohort`)
    DIR/patients/<id>/seg.nii.gz    16 merged classes (vctcore.labels.MERGED_CLASSES)
    DIR/patients/<id>/labels.nii.gz fine labels, where known (vctcore.labels.FINE_LABELS)

Patients are written one by one; a rerun skips patients whose files are all present, so an
interrupted job resumes where it stopped. JSON and CSV files are replaced atomically.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from vctcore.provenance import package_versions
from vctcore.provenance import provenance as provenance_record
from vctcore.volume import CTVolume, LabelMap, canonical_shape, read_ct, read_labels, write_ct, write_labels

PATIENT_FILES = ("ct.nii.gz", "seg.nii.gz")
#: where a patient's CT may lie, in order of preference: NIfTI, DICOM series folder, zip of a series
CT_SOURCES = ("ct.nii.gz", "ct", "ct.zip")


def patient_ct_path(patient_dir: str | os.PathLike) -> Path:
    """The patient's CT: the first of ``CT_SOURCES`` that exists (ct/ must be a folder); FileNotFoundError
    naming the folder and what it looked for when there is none."""
    d = Path(patient_dir)
    for name in CT_SOURCES:
        path = d / name
        if (path.is_dir() if name == "ct" else path.is_file()):
            return path
    raise FileNotFoundError(f"{d}: no CT (looked for ct.nii.gz, a DICOM series folder ct/ and ct.zip)")


def model_package_versions() -> dict[str, str]:
    """The installed package versions (:func:`vctcore.provenance.package_versions`, torch and MONAI
    included); kept under this name for the training code that records them."""
    return package_versions()


def _atomic_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def patient_complete(patient_dir: str | os.PathLike) -> bool:
    """True when every file of :data:`PATIENT_FILES` is in ``patient_dir``."""
    return all((Path(patient_dir) / f).exists() for f in PATIENT_FILES)


def write_patient(patient_dir: str | os.PathLike, *, ct: CTVolume, seg: LabelMap,
                  labels: LabelMap | None = None) -> Path:
    """Write one patient's volumes into ``patient_dir``, each file atomically and the CT last, so
    :func:`patient_complete` is true only once all are written (a killed writer leaves no complete
    patient with a partial file). Workers of an executor call it directly."""
    d = Path(patient_dir)
    d.mkdir(parents=True, exist_ok=True)
    if labels is not None:
        write_labels(labels, d / "labels.nii.gz")
    write_labels(seg, d / "seg.nii.gz")
    write_ct(ct, d / "ct.nii.gz")
    return d


class CohortWriter:
    """Writes a cohort directory incrementally (resumable)."""

    def __init__(self, root: str | os.PathLike, provenance: dict[str, Any]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.provenance = {**provenance, **provenance_record()}
        _atomic_text(self.root / "cohort.json", json.dumps(self.provenance, indent=2, default=str))

    def patient_dir(self, pid: str) -> Path:
        return self.root / "patients" / pid

    def has(self, pid: str) -> bool:
        return patient_complete(self.patient_dir(pid))

    def add(self, pid: str, *, ct: CTVolume, seg: LabelMap, labels: LabelMap | None = None) -> Path:
        """Write one patient's volumes (:func:`write_patient`)."""
        return write_patient(self.patient_dir(pid), ct=ct, seg=seg, labels=labels)

    def write_attributes(self, table: pd.DataFrame) -> Path:
        path = self.root / "attributes.csv"
        _atomic_text(path, table.to_csv(index=False))
        return path

    def update_provenance(self, **extra: Any) -> None:
        self.provenance.update(extra)
        _atomic_text(self.root / "cohort.json", json.dumps(self.provenance, indent=2, default=str))


def read_provenance(root: str | os.PathLike) -> dict[str, Any]:
    """The cohort's ``cohort.json`` (what made it); {} when there is none, and ``{"error": ...}`` when it
    is not valid JSON, so a listing or a report that only records it does not fail on it."""
    path = Path(root) / "cohort.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {"error": f"{path} is not valid JSON"}


def read_attributes(root: str | os.PathLike) -> pd.DataFrame:
    """The cohort's attribute table (one row per patient)."""
    path = Path(root) / "attributes.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: not a cohort directory")
    return pd.read_csv(path, dtype={"id": str})


class LazyVolumes(Sequence):
    """Volumes read from their files on each access, so iterating holds one at a time in memory."""

    def __init__(self, paths: list[Path], reader: Callable[[Path], Any]) -> None:
        self.paths, self.reader = list(paths), reader

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self.reader(p) for p in self.paths[i]]
        return self.reader(self.paths[i])


def read_first_patients(root: str | os.PathLike, n: int, grid_shape: tuple[int, ...] | None = None, *,
                        ct: bool = True) -> tuple[pd.DataFrame, LazyVolumes, LazyVolumes]:
    """The first ``n`` patients of a cohort: their attribute rows, CTs (HU; empty with ``ct=False``) and
    label maps, each (X, Y, Z), read from disk when indexed or iterated (one patient at a time). Every
    file's header is checked first: ValueError when a volume is not on ``grid_shape`` (say, a held-out
    cohort built on another grid than the model's), before any voxel is read."""
    table = read_attributes(root).iloc[:n].reset_index(drop=True)
    patients = Path(root) / "patients"
    ids = [str(pid) for pid in table["id"]]
    ct_paths = [patients / pid / "ct.nii.gz" for pid in ids] if ct else []
    seg_paths = [patients / pid / "seg.nii.gz" for pid in ids]
    if grid_shape is not None:
        off = sorted({p.parent.name for p in [*ct_paths, *seg_paths] if canonical_shape(p) != tuple(grid_shape)})
        if off:
            raise ValueError(f"{root}: volumes not on the grid {tuple(grid_shape)}, patients {', '.join(off)}")
    return table, LazyVolumes(ct_paths, read_ct), LazyVolumes(seg_paths, read_labels)
