"""The images a trial evaluates, as rows: where each image lies, what it is, its measured attributes.

An *image table* has one row per image with ``patient_id``, ``source_id``, ``sample_type``, ``dir``
(the directory holding ``ct.nii.gz`` and ``seg.nii.gz``) and the 8 attributes of
:data:`vctcore.trial.attribution.FEATURES`: ``sex`` and ``age_years`` as recorded (real) or
conditioned (reconstructed, synthetic), the others measured from the image
(:mod:`vctcore.trial.ground_truth`), ``height_cm`` through the real cohort's height calibration.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vctcore.executors import Executor
from vctcore.progress import Progress
from vctcore.trial.ground_truth import MEASURED, HeightCalibration, ImageRef, measure_images


def refs(images: pd.DataFrame) -> list[ImageRef]:
    """One :class:`ImageRef` per row (key = ``patient_id``)."""
    return [ImageRef(str(r.patient_id), Path(r.dir) / "ct.nii.gz", Path(r.dir) / "seg.nii.gz")
            for r in images.itertuples()]


def measure_table(images: pd.DataFrame, *, cache_dir: Path, segmentation: str, workers: int,
                  progress: Progress | None = None, executor: Executor | None = None) -> pd.DataFrame:
    """``images`` with the measured fields (``extent_cm`` among them) and ``measure_notes`` added, measured
    by ``executor`` (default: ``workers`` local processes)."""
    got = measure_images(refs(images), cache_dir=cache_dir, segmentation=segmentation, workers=workers,
                         progress=progress, executor=executor)
    out = images.copy()
    for col in MEASURED:
        out[col] = [np.nan if got[p].get(col) is None else float(got[p][col]) for p in out["patient_id"]]
    out["measure_notes"] = ["; ".join(got[p].get("notes", [])) for p in out["patient_id"]]
    return out


def with_height(images: pd.DataFrame, calibration: HeightCalibration) -> pd.DataFrame:
    """``height_cm`` from ``extent_cm`` by the calibration."""
    out = images.copy()
    out["height_cm"] = calibration.apply(out["extent_cm"])
    return out


def predict_table(model, images: pd.DataFrame, *, progress: Progress | None = None) -> np.ndarray:
    """The model's prediction for every image of ``images`` (n,), in its target's unit."""
    from vctcore.volume import read_ct

    preds = np.empty(len(images))
    for k, r in enumerate(images.itertuples()):
        preds[k] = float(model.predict(read_ct(Path(r.dir) / "ct.nii.gz")))
        if progress:
            progress(k + 1, len(images), str(r.patient_id))
    return preds
