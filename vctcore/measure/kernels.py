"""Voxel loops of the measurement: one pass over the CT for labels and per-slice tables.

Each function has a compiled path (numba, when importable: ``nogil`` kernels run on x-blocks in
``MEASURE_THREADS`` Python threads, no numba threading layer, so they are safe under fork and in
threaded apps) and a numpy path (chunked over z) with identical results. ``VCT_NO_NUMBA=1`` forces
the numpy path. Arrays are (X, Y, Z); HU in Hounsfield units.

Tables: ``counts[z, v]`` voxels of label value v in slice z and ``adj[z, v]`` the sum of their
air-adjusted HU (HU at or below -900 count as -1000), so the Appendix-B density sum is
``(adj + 1000 * counts) / 1000``.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from vctcore.measure.composition import AIR_CUTOFF_HU, N_LABEL_VALUES

MEASURE_THREADS = max(1, min(2, os.cpu_count() or 1))
CHUNK_SLICES = 24

try:  # numba ships with shap (requirements.txt); the numpy path below is the fallback
    if os.environ.get("VCT_NO_NUMBA"):
        raise ImportError("VCT_NO_NUMBA is set")
    from numba import njit
except Exception:  # ImportError, or a numba that refuses this numpy: use numpy  # pragma: no cover
    njit = None

HAVE_NUMBA = njit is not None


def _blocks(n: int, parts: int) -> list[tuple[int, int]]:
    step = -(-n // parts)
    return [(a, min(n, a + step)) for a in range(0, n, step)]


def _threaded(fn, nx: int, nz: int) -> tuple[np.ndarray, np.ndarray]:
    """Run ``fn(x0, x1, counts, adj)`` on x-blocks in threads; sum the per-block (value, z) tables."""
    blocks = _blocks(nx, MEASURE_THREADS)
    tables = [(np.zeros((N_LABEL_VALUES, nz), np.int64), np.zeros((N_LABEL_VALUES, nz), np.float64))
              for _ in blocks]
    if len(blocks) == 1:
        fn(*blocks[0], *tables[0])
    else:
        with ThreadPoolExecutor(len(blocks)) as pool:
            list(pool.map(lambda bt: fn(*bt[0], *bt[1]), zip(blocks, tables)))
    counts = np.sum([t[0] for t in tables], axis=0)
    adj = np.sum([t[1] for t in tables], axis=0)
    return np.ascontiguousarray(counts.T), np.ascontiguousarray(adj.T)


if HAVE_NUMBA:
    @njit(nogil=True, cache=True)
    def _tables_kernel(hu, labels, x0, x1, counts, adj):  # pragma: no cover - compiled
        ny, nz = hu.shape[1], hu.shape[2]
        for x in range(x0, x1):
            for y in range(ny):
                for z in range(nz):
                    v = labels[x, y, z]
                    h = hu[x, y, z]
                    counts[v, z] += 1
                    adj[v, z] += h if h > -900.0 else -1000.0

    @njit(nogil=True, cache=True)
    def _classify_kernel(hu, interior, band, vat, known, use_known, bones_known, fx, fy, fz,  # pragma: no cover
                         fat_lo, fat_hi, muscle_max, bone_hu, codes, out, x0, x1, counts, adj):
        sat, vatc, muscle, soft, bone = codes[0], codes[1], codes[2], codes[3], codes[4]
        ny, nz = hu.shape[1], hu.shape[2]
        for x in range(x0, x1):
            cx = x // fx
            for y in range(ny):
                cy = y // fy
                for z in range(nz):
                    cz = z // fz
                    h = hu[x, y, z]
                    lab = 0
                    if use_known:
                        lab = known[x, y, z]
                    if lab == 0:
                        if interior[cx, cy, cz] or (band[cx, cy, cz] and h > -900.0):
                            if fat_lo <= h <= fat_hi:
                                lab = vatc if vat[cx, cy, cz] else sat
                            elif fat_hi < h <= muscle_max:
                                lab = muscle
                            elif h >= bone_hu and not bones_known:
                                lab = bone
                            else:
                                lab = soft
                    out[x, y, z] = lab
                    counts[lab, z] += 1
                    adj[lab, z] += h if h > -900.0 else -1000.0

    @njit(nogil=True, cache=True)
    def _lut_kernel(data, lut, out, x0, x1):  # pragma: no cover - compiled
        ny, nz = data.shape[1], data.shape[2]
        for x in range(x0, x1):
            for y in range(ny):
                for z in range(nz):
                    out[x, y, z] = lut[data[x, y, z]]


def slice_tables(hu: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``counts[z, v]`` and ``adj[z, v]`` of ``labels`` (values < 256) over ``hu``."""
    nx, _, nz = hu.shape
    if HAVE_NUMBA:
        return _threaded(lambda x0, x1, c, a: _tables_kernel(hu, labels, x0, x1, c, a), nx, nz)
    counts = np.zeros((nz, N_LABEL_VALUES), np.int64)
    adj = np.zeros((nz, N_LABEL_VALUES), np.float64)
    for z0 in range(0, nz, CHUNK_SLICES):
        z1 = min(z0 + CHUNK_SLICES, nz)
        _numpy_tables(hu[:, :, z0:z1], labels[:, :, z0:z1], counts[z0:z1], adj[z0:z1])
    return counts, adj


def _numpy_tables(h: np.ndarray, lab: np.ndarray, counts: np.ndarray, adj: np.ndarray) -> None:
    n = h.shape[2]
    key = lab.astype(np.intp) * n + np.arange(n, dtype=np.intp)[None, None, :]
    weights = np.where(h > AIR_CUTOFF_HU, h, np.asarray(-1000, dtype=h.dtype)).ravel()
    counts += np.bincount(key.ravel(), minlength=N_LABEL_VALUES * n).reshape(N_LABEL_VALUES, n).T
    adj += np.bincount(key.ravel(), weights=weights, minlength=N_LABEL_VALUES * n).reshape(N_LABEL_VALUES, n).T


def apply_lut(data: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """``lut[data]`` as uint8 (``lut`` covers every value of ``data``)."""
    lut = np.ascontiguousarray(lut, dtype=np.uint8)
    if not HAVE_NUMBA:
        return lut[data]
    out = np.empty(data.shape, np.uint8)
    blocks = _blocks(data.shape[0], MEASURE_THREADS)
    with ThreadPoolExecutor(len(blocks)) as pool:
        list(pool.map(lambda b: _lut_kernel(data, lut, out, *b), blocks))
    return out


def classify(hu: np.ndarray, interior: np.ndarray, band: np.ndarray, vat: np.ndarray,
             factors: tuple[int, int, int], known: np.ndarray | None, bones_known: bool,
             limits: tuple[float, float, float, float], codes: tuple[int, int, int, int, int],
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Threshold labels of every voxel, and their tables (see module doc), in one pass.

    ``interior``, ``band``, ``vat``: coarse masks (``factors`` voxels per coarse voxel along X, Y, Z);
    body = interior, or band with HU above -900. ``known``: fine labels that win where non-zero.
    ``limits``: fat low, fat high, muscle max, bone (HU). ``codes``: label values for subcutaneous fat,
    visceral fat, muscle, soft tissue and unidentified bone (soft tissue when ``bones_known``).
    """
    nx, _, nz = hu.shape
    if HAVE_NUMBA:
        out = np.empty(hu.shape, np.uint8)
        use_known = known is not None
        k = known if use_known else np.zeros((1, 1, 1), np.uint8)
        ints = [np.ascontiguousarray(m, dtype=np.uint8) for m in (interior, band, vat)]
        code_arr = np.asarray(codes, dtype=np.uint8)
        lim = [float(v) for v in limits]

        def run(x0, x1, c, a):
            _classify_kernel(hu, *ints, k, use_known, bones_known, *factors, *lim, code_arr, out, x0, x1, c, a)

        counts, adj = _threaded(run, nx, nz)
        return out, counts, adj
    return _numpy_classify(hu, interior, band, vat, factors, known, bones_known, limits, codes)


def _upsample(coarse: np.ndarray, factors: tuple[int, int, int], shape: tuple[int, ...], z0: int,
              z1: int) -> np.ndarray:
    """Nearest-neighbour upsampling of coarse slices covering full-resolution slices z0..z1-1."""
    fx, fy, fz = factors
    c = coarse[:, :, z0 // fz:(z1 - 1) // fz + 1]
    c = np.repeat(np.repeat(c, fx, axis=0)[:shape[0]], fy, axis=1)[:, :shape[1]]
    c = np.repeat(c, fz, axis=2)
    start = z0 - (z0 // fz) * fz
    return c[:, :, start:start + (z1 - z0)]


def _numpy_classify(hu, interior, band, vat, factors, known, bones_known, limits, codes):
    fat_lo, fat_hi, muscle_max, bone_hu = limits
    sat, vatc, muscle, soft, bone = codes
    nz = hu.shape[2]
    out = np.zeros(hu.shape, dtype=np.uint8)
    counts = np.zeros((nz, N_LABEL_VALUES), np.int64)
    adj = np.zeros((nz, N_LABEL_VALUES), np.float64)
    step = max(factors[2], (CHUNK_SLICES // factors[2]) * factors[2])
    for z0 in range(0, nz, step):
        z1 = min(z0 + step, nz)
        h = hu[:, :, z0:z1]
        body = _upsample(interior, factors, hu.shape, z0, z1)
        body |= _upsample(band, factors, hu.shape, z0, z1) & (h > AIR_CUTOFF_HU)
        lab = np.full(h.shape, soft, dtype=np.uint8)
        fat = (h >= fat_lo) & (h <= fat_hi)
        lab[fat] = sat
        lab[fat & _upsample(vat, factors, hu.shape, z0, z1)] = vatc
        lab[(h > fat_hi) & (h <= muscle_max)] = muscle
        if not bones_known:
            lab[h >= bone_hu] = bone
        lab[~body] = 0
        if known is not None:
            k = known[:, :, z0:z1]
            lab = np.where(k > 0, k, lab)
        out[:, :, z0:z1] = lab
        _numpy_tables(h, lab, counts[z0:z1], adj[z0:z1])
    return out, counts, adj
