"""Ground truth of every image of a trial, measured from the image the same way (paper Appendix B).

Real, reconstructed and synthetic images are all measured by :func:`vctcore.fidelity.measures.image_measurements`
from the CT (HU) and a 16-class merged segmentation, so that a difference between sample types is a
difference between images, not between measurement methods:

* ``segmentation="own"``: the segmentation that comes with the image (a real cohort's ``seg.nii.gz``,
  the generator's joint segmentation of a synthetic patient, the decoded segmentation of a reconstruction).
* ``segmentation="independent"``: the independent segmenter of the fidelity suite
  (:func:`vctcore.checkers.segmenter.load_segmenter`, TotalSegmentator when installed) on every image,
  as the paper does with TotalSegmentator.

Measured per image: ``weight_kg``, ``body_volume_l`` (Appendix B density over the body mask),
``bfp_pct`` and ``mmp_pct`` (fat and skeletal muscle outside the labelled organs by HU thresholds, so
"muscle" includes soft tissue no organ class covers), ``bone_density_hu`` (lumbar trabecular core) and
``extent_cm`` (head-to-foot extent of the body). ``height_cm`` is the extent mapped by a
:class:`HeightCalibration` fitted on the real cohort's recorded heights (the paper corrects its height
by a linear fit). Sex and age are not measured: they are the recorded (real) or conditioned (synthetic)
values.

Results are cached per image in ``cache_dir/<method>/<key>.json``, the key being the sha256 of the CT
and segmentation files, so an image is measured once across tasks and trials.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vctcore.assets import package_file
from vctcore.executors import Executor
from vctcore.executors.local import LocalExecutor
from vctcore.fidelity.measures import FIELDS
from vctcore.models.checkpoint import sha256_file
from vctcore.progress import Progress

#: the fields measured per image (those of the fidelity suite's measurement)
MEASURED = FIELDS
#: bump when image_measurements changes what it returns (invalidates the measurement cache)
METHOD_VERSION = 1
#: extent -> height fitted on real (phantom) CT, for trials without a real cohort of their own (audits)
DEFAULT_HEIGHT_CALIBRATION = package_file("trial/extent_height.json")


@dataclass(frozen=True)
class ImageRef:
    """One image to measure: ``key`` names it in results; ``ct``/``seg`` are NIfTI paths on one grid."""

    key: str
    ct: Path
    seg: Path


@dataclass(frozen=True)
class HeightCalibration:
    """height_cm = slope * extent_cm + intercept, fitted on a real cohort (identity when not fitted)."""

    slope: float = 1.0
    intercept: float = 0.0
    n: int = 0
    residual_sd_cm: float = math.nan

    @classmethod
    def fit(cls, extent_cm: Sequence[float], height_cm: Sequence[float]) -> HeightCalibration:
        from vctcore.fidelity.conditioning import fit_line

        x, y = np.asarray(extent_cm, float), np.asarray(height_cm, float)
        ok = np.isfinite(x) & np.isfinite(y)
        slope, intercept = fit_line(x[ok], y[ok])
        resid = y[ok] - (slope * x[ok] + intercept)
        return cls(slope, intercept, int(ok.sum()), float(resid.std(ddof=1)) if ok.sum() > 2 else math.nan)

    @classmethod
    def load(cls, path: str | os.PathLike = None) -> HeightCalibration:
        """A calibration saved as JSON (default: the shipped fit on phantoms, ``extent_height.json``)."""
        d = json.loads(Path(path or DEFAULT_HEIGHT_CALIBRATION).read_text())
        return cls(float(d["slope"]), float(d["intercept"]), int(d["n"]), float(d["residual_sd_cm"]))

    def save(self, path: str | os.PathLike, **provenance: Any) -> Path:
        """Write the calibration as JSON, with ``provenance`` (what it was fitted on) beside it."""
        path = Path(path)
        path.write_text(json.dumps({**self.to_dict(), "provenance": provenance}, indent=2, default=str) + "\n")
        return path

    def apply(self, extent_cm: Any) -> np.ndarray:
        return self.slope * np.asarray(extent_cm, float) + self.intercept

    def to_dict(self) -> dict[str, float]:
        return {"slope": self.slope, "intercept": self.intercept, "n": self.n, "residual_sd_cm": self.residual_sd_cm}


_SEGMENTER = None


def _independent_segmentation(ct):
    global _SEGMENTER
    from vctcore.checkers.segmenter import load_segmenter
    from vctcore.fidelity.anatomy import body_mask

    if _SEGMENTER is None:
        _SEGMENTER = load_segmenter("auto", device="cpu")
    return _SEGMENTER.segment(ct, body_mask(ct))


def measure_image(ct_path: str | os.PathLike, seg_path: str | os.PathLike, segmentation: str = "own") -> dict[str, Any]:
    """The :data:`MEASURED` fields of one image (NaN where not measurable) and ``notes`` (list of str)."""
    from vctcore.fidelity.measures import image_measurements
    from vctcore.labels import MERGED_CLASSES
    from vctcore.volume import read_ct, read_labels

    ct = read_ct(ct_path)
    if segmentation == "independent":
        seg = _independent_segmentation(ct)
    elif segmentation == "own":
        seg = read_labels(seg_path, names=MERGED_CLASSES, like=ct)
    else:
        raise ValueError(f"segmentation must be 'own' or 'independent', got {segmentation!r}")
    out = image_measurements(ct, seg)
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


def _cache_key(ref: ImageRef, segmentation: str) -> str:
    parts = [sha256_file(ref.ct)] + ([sha256_file(ref.seg)] if segmentation == "own" else [])
    return hashlib.sha256(f"v{METHOD_VERSION}:{segmentation}:{':'.join(parts)}".encode()).hexdigest()[:32]


def _measure_job(ct: str, seg: str, segmentation: str, threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    return measure_image(ct, seg, segmentation)


def _measure_task(_: None, task: tuple[str, str, str, int]) -> dict[str, Any]:
    """:func:`_measure_job` as an executor task."""
    return _measure_job(*task)


def measure_images(refs: Sequence[ImageRef], *, cache_dir: Path, segmentation: str = "own", workers: int = 1,
                   progress: Progress | None = None, executor: Executor | None = None) -> dict[str, dict[str, Any]]:
    """Measure every image of ``refs`` (cached; the rest by ``executor``, default ``workers`` local
    processes); returns key -> record."""
    cache_dir = Path(cache_dir) / segmentation
    cache_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, dict[str, Any]] = {}
    todo: list[tuple[ImageRef, Path]] = []
    for ref in refs:
        path = cache_dir / f"{_cache_key(ref, segmentation)}.json"
        if path.exists():
            out[ref.key] = json.loads(path.read_text())
        else:
            todo.append((ref, path))
    total, done = len(refs), len(out)
    if progress:
        progress(done, total, "cached" if done else "")
    executor = executor or LocalExecutor(workers)
    # one worker here uses every core; several share them (one thread each)
    here = not executor.distributed and (executor.workers <= 1 or len(todo) <= 1)
    threads = max(1, os.cpu_count() or 1) if here else 1
    tasks = [(str(Path(ref.ct).resolve()), str(Path(ref.seg).resolve()), segmentation, threads) for ref, _ in todo]
    for k, rec in executor.map(_measure_task, tasks):
        ref, path = todo[k]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rec))
        os.replace(tmp, path)
        out[ref.key] = rec
        done += 1
        if progress:
            progress(done, total, ref.key)
    return out
