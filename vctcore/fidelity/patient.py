"""Per-patient evaluation records (JSON-ready dicts) and their slice features, cached on disk.

A real patient: the independent segmentation of its CT (Dice against its own label map, organ
volumes and centroids, measurements, sex call), and, when the generator's grid matches, its
autoencoder reconstruction (PSNR, SSIM, measurements of the reconstructed image). A synthetic
patient: the independent segmentation of its CT against the generator's joint segmentation (Dice),
organ statistics, measurements and sex calls (independent and joint segmentation, and the image sex
classifier when one is given: record key ``sex_image``).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from vctcore.checkers.segmenter import Segmenter
from vctcore.checkers.sex_classifier import SexClassifier
from vctcore.fidelity.anatomy import body_mask, body_origin_mm, organ_stats
from vctcore.fidelity.measures import extent_cm, image_measurements
from vctcore.fidelity.realism import PLANES, slice_features
from vctcore.fidelity.recon import can_reconstruct, psnr_hu, reconstruct, ssim_hu
from vctcore.fidelity.sex import call_sex
from vctcore.labels import MERGED_CLASSES
from vctcore.overlap import dice_per_class
from vctcore.volume import CTVolume, LabelMap, read_ct, read_labels

Features = dict[str, np.ndarray]


def _image_record(ct: CTVolume, segmenter: Segmenter, sex_clf: SexClassifier | None = None
                  ) -> tuple[dict[str, Any], LabelMap, float]:
    """(measurements, sex calls and organ statistics, the independent segmentation, the body's S extent in
    mm) of one image."""
    mask = body_mask(ct)
    indep = segmenter.segment(ct, mask)
    origin = body_origin_mm(ct, mask)
    extent_mm = extent_cm(ct, mask) * 10.0
    rec = {"measures": image_measurements(ct, indep, mask), "organs": organ_stats(indep, origin)}
    rec["sex"] = call_sex(indep, extent_mm).to_dict()
    if sex_clf is not None:
        rec["sex_image"] = sex_clf.call(ct)
    return rec, indep, extent_mm


def _patient_record(pid: str, kind: str, patient_dir: Path, requested: dict[str, Any], segmenter: Segmenter,
                    sex_clf: SexClassifier | None) -> tuple[dict[str, Any], CTVolume, LabelMap, LabelMap, float]:
    """(the record's common fields: id, kind, requested and ``_image_record``'s; the CT; its ``seg.nii.gz``: the
    truth of a real patient, the joint segmentation of a synthetic one; the independent segmentation; the body's
    S extent in mm) of one patient directory."""
    ct = read_ct(patient_dir / "ct.nii.gz")
    seg = read_labels(patient_dir / "seg.nii.gz", names=MERGED_CLASSES, like=ct)
    image, indep, extent_mm = _image_record(ct, segmenter, sex_clf)
    return {"id": pid, "kind": kind, "requested": requested, **image}, ct, seg, indep, extent_mm


def _features(features_net: Segmenter | None, ct: CTVolume, per_plane: int) -> Features | None:
    return None if features_net is None else slice_features(features_net, ct, per_plane)


def evaluate_real(pid: str, patient_dir: Path, requested: dict[str, Any], segmenter: Segmenter,
                  features_net: Segmenter | None, generator=None, per_plane: int = 16,
                  sex_clf: SexClassifier | None = None) -> tuple[dict[str, Any], Features | None, Features | None]:
    """(record, features of the CT, features of its reconstruction or None) of one real patient."""
    t0 = time.perf_counter()
    rec, ct, truth, indep, _ = _patient_record(pid, "real", patient_dir, requested, segmenter, sex_clf)
    rec["segmenter_dice"] = dice_per_class(indep.data, truth.data)
    feats = _features(features_net, ct, per_plane)
    recon_feats = None
    why = "not reconstructed (beyond --recon-n)" if generator is None else can_reconstruct(generator, ct)
    if why:
        rec["recon"] = {"skipped": why}
    else:
        rct, rseg = reconstruct(generator, ct, truth, requested)
        rec["recon"] = {"psnr_db": psnr_hu(ct.data, rct.data), "ssim": ssim_hu(ct.data, rct.data),
                        "seg_dice": dice_per_class(rseg.data, truth.data), **_image_record(rct, segmenter, sex_clf)[0]}
        recon_feats = _features(features_net, rct, per_plane)
    rec["seconds"] = time.perf_counter() - t0
    return rec, feats, recon_feats


def evaluate_synthetic(pid: str, patient_dir: Path, requested: dict[str, Any], segmenter: Segmenter,
                       features_net: Segmenter | None, per_plane: int = 16,
                       sex_clf: SexClassifier | None = None) -> tuple[dict[str, Any], Features | None]:
    """(record, features) of one generated patient (``ct.nii.gz`` + joint ``seg.nii.gz``)."""
    t0 = time.perf_counter()
    rec, ct, joint, indep, extent_mm = _patient_record(pid, "synthetic", patient_dir, requested, segmenter, sex_clf)
    rec["joint_dice"] = dice_per_class(joint.data, indep.data)
    rec["sex_joint"] = call_sex(joint, extent_mm).to_dict()
    feats = _features(features_net, ct, per_plane)
    rec["seconds"] = time.perf_counter() - t0
    return rec, feats


# ---------------------------------------------------------------- cache
def save_cached(cache: Path, pid: str, rec: dict[str, Any], feats: Features | None,
                recon: Features | None = None) -> None:
    """Write ``cache/<id>.npz`` (features) then ``cache/<id>.json`` (the record; written last)."""
    cache.mkdir(parents=True, exist_ok=True)
    arrays = dict(feats or {})
    arrays |= {f"recon_{p}": recon[p] for p in PLANES} if recon else {}
    tmp = cache / f".{pid}.tmp.npz"
    np.savez(tmp, **arrays)
    tmp.replace(cache / f"{pid}.npz")
    tmpj = cache / f".{pid}.tmp.json"
    tmpj.write_text(json.dumps(rec, default=_json_default))
    tmpj.replace(cache / f"{pid}.json")


def load_cached(cache: Path, pid: str) -> tuple[dict[str, Any], Features | None, Features | None] | None:
    """(record, features, recon features) from the cache, or None when not there."""
    j, z = cache / f"{pid}.json", cache / f"{pid}.npz"
    if not (j.exists() and z.exists()):
        return None
    rec = json.loads(j.read_text())
    with np.load(z) as data:
        feats = {p: data[p] for p in PLANES} if all(p in data for p in PLANES) else None
        recon = {p: data[f"recon_{p}"] for p in PLANES} if all(f"recon_{p}" in data for p in PLANES) else None
    return rec, feats, recon


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
