"""Benchmark: seconds and peak memory of ``vctcore.measure.measure`` on a clinical-size CT.

The CT is a phantom (default 6 x 6 x 8 mm grid) resampled to 512 x 512 x 600 voxels of
0.8 x 0.8 x 2.0 mm (410 x 410 x 1200 mm: shoulders to thighs, the arms partly outside the field of
view), int16 HU (trilinear), with its fine labels (nearest neighbour). Times ``measure()`` with the
threshold backend and with the labels backend on 2 threads (the kernels' thread count), after a
warm-up on a small copy (numba compilation, cached on disk after the first run). Prints JSON, one
object per backend; ``seconds`` is the best of ``--repeat`` runs; ``peak_rss_mb`` is the process
peak (mostly building the test CT), ``measure_peak_alloc_mb`` what one ``measure()`` call allocates
at most on top of its inputs (tracemalloc, separate run).

    python bench/measure.py [--backend threshold|labels|both] [--repeat N]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time
import tracemalloc

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from vctcore.labels import FINE_LABEL_NAMES  # noqa: E402
from vctcore.measure import measure  # noqa: E402
from vctcore.phantom import build_phantom  # noqa: E402
from vctcore.volume import CTVolume, LabelMap, make_affine  # noqa: E402

SHAPE = (512, 512, 600)
SPACING_MM = (0.8, 0.8, 2.0)
TARGET_S = 5.0
ATTRS = dict(sex="M", age_years=50, height_cm=178, weight_kg=82, bfp_pct=25, mmp_pct=36, bone_density_hu=160)


def clinical_ct(seed: int = 0) -> tuple[CTVolume, LabelMap]:
    """A 512 x 512 x 600 CT (int16 HU) and fine labels resampled from a phantom (see module doc)."""
    ph = build_phantom(ATTRS, seed=seed, pose="supine")
    src_sp = np.array(ph.ct.spacing_mm)
    zs = np.flatnonzero(ph.labels.mask("vertebrae_L3").any(axis=(0, 1)))
    centre = np.array([ph.ct.shape[0] / 2, ph.ct.shape[1] / 2, zs.mean()])  # centred on L3
    extent_vox = np.array(SHAPE) * np.array(SPACING_MM) / src_sp
    lo = np.floor(centre - extent_vox / 2).astype(int)
    hi = lo + np.ceil(extent_vox).astype(int) + 1
    pad = [(max(0, -a), max(0, b - n)) for a, b, n in zip(lo, hi, ph.ct.shape)]
    hu = np.pad(ph.ct.data, pad, constant_values=-1024.0)
    lab = np.pad(ph.labels.data, pad)
    box = tuple(slice(a + p[0], b + p[0]) for a, b, p in zip(lo, hi, pad))
    zoom = src_sp / np.array(SPACING_MM)
    big = ndimage.zoom(hu[box], zoom, order=1, output=np.float32, grid_mode=True, mode="grid-constant", cval=-1024)
    big = np.ascontiguousarray(big[:SHAPE[0], :SHAPE[1], :SHAPE[2]])
    idx = [np.minimum((np.arange(n) * s / src).astype(int), m - 1)
           for n, s, src, m in zip(SHAPE, SPACING_MM, src_sp, lab[box].shape)]
    labels = lab[box][np.ix_(*idx)]
    origin = ph.ct.affine[:3, 3] + (lo - 0.5) * src_sp + np.array(SPACING_MM) / 2
    affine = make_affine(SPACING_MM, tuple(origin))
    ct = CTVolume(data=np.rint(big).astype(np.int16), affine=affine)
    return ct, LabelMap(data=labels, affine=affine, names=dict(FINE_LABEL_NAMES))


def run(backend: str, ct: CTVolume, labels: LabelMap, repeat: int) -> dict:
    seg = labels if backend == "labels" else None
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        m = measure(ct, seg, backend)
        times.append(time.perf_counter() - t)
    tracemalloc.start()  # separate run: numpy reports its buffers to tracemalloc
    measure(ct, seg, backend)
    alloc_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"benchmark": "measure", "backend": backend, "seconds": min(times), "seconds_all": times,
            "target_s": TARGET_S, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "measure_peak_alloc_mb": alloc_peak / 2**20, "input_mb": (ct.data.nbytes + labels.data.nbytes) / 2**20,
            "shape": list(ct.shape), "spacing_mm": list(SPACING_MM), "dtype": str(ct.data.dtype),
            "threads": os.environ["OMP_NUM_THREADS"], "cpu_count": os.cpu_count(),
            "whole_body": m.coverage.get("whole_body"), "bone_density_hu": m.bone_density_hu,
            "l3_muscle_area_cm2": m.l3_muscle_area_cm2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("threshold", "labels", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    t = time.perf_counter()
    ct, labels = clinical_ct()
    setup_s = time.perf_counter() - t
    t = time.perf_counter()  # compile (or load from numba's cache) the kernels for these dtypes
    small = CTVolume(data=np.ascontiguousarray(ct.data[::4, ::4, ::4]), affine=ct.affine)
    small_labels = LabelMap(data=np.ascontiguousarray(labels.data[::4, ::4, ::4]), affine=ct.affine, names=labels.names)
    for backend in ("threshold", "labels"):
        measure(small, small_labels if backend == "labels" else None, backend)
    warmup_s = time.perf_counter() - t
    for backend in (("threshold", "labels") if args.backend == "both" else (args.backend,)):
        print(json.dumps({**run(backend, ct, labels, args.repeat), "setup_s": round(setup_s, 1),
                          "warmup_s": round(warmup_s, 2)}))


if __name__ == "__main__":
    main()
