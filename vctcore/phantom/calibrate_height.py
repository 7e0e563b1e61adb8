"""Fitting the linear height calibration of :mod:`vctcore.measure.height_calibration` on phantoms.

Phantoms of the adult reference population are built in varied poses (supine with random bent knees,
pointed feet and arm placement; every fourth one standing); the true height is the requested
``height_cm`` (cm), the raw height the segment sum of :func:`vctcore.measure.height.measure_height`
without calibration. The fit lives with the phantom, which it builds; the measurement side only reads
the shipped JSON. Regenerate the shipped fit with ``python -m vctcore.phantom.calibrate_height --n 40 --seed 4242``.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from vctcore.assets import default_population
from vctcore.measure.height import measure_height
from vctcore.measure.height_calibration import DEFAULT_CALIBRATION_PATH, HeightCalibration
from vctcore.phantom.builder import REQUIRED, build_phantom, check_attributes
from vctcore.population import PopulationSpec
from vctcore.provenance import provenance as provenance_record

#: population the default fit draws its attribute rows from
DEFAULT_POPULATION = default_population()
#: calibration row i gets phantom seed PHANTOM_SEED_BASE + 1000 * seed + i (far from the seeds tests use)
PHANTOM_SEED_BASE = 500_000


def pose_mode(i: int) -> str:
    """Pose mode of calibration phantom ``i``: every fourth standing, the rest supine (random pose)."""
    return "standing" if i % 4 == 3 else "supine"


def phantom_rows(n: int, seed: int, population: str | Path = DEFAULT_POPULATION):
    """The first ``n`` rows of ``population`` sampled with ``seed`` that lie in the phantom's support."""
    spec = PopulationSpec.from_yaml(population)
    m = 2 * n
    while True:
        rows = spec.sample(m, seed=seed)
        keep = []
        for i, (_, row) in enumerate(rows.iterrows()):
            try:
                check_attributes({k: row[k] for k in REQUIRED})
            except ValueError:
                continue
            keep.append(i)
        if len(keep) >= n:
            return rows.iloc[keep[:n]]
        m *= 2


def fit_height_calibration(n: int = 40, seed: int = 4242, *, population: str | Path = DEFAULT_POPULATION,
                           progress: bool = False) -> HeightCalibration:
    """Fit the height calibration on ``n`` phantoms (about 2 s each) in varied poses.

    Rows: ``population`` sampled with ``seed`` (rows the phantom cannot build are skipped and recorded);
    row i uses phantom seed ``PHANTOM_SEED_BASE + 1000 * seed + i``; the k-th built phantom has pose
    ``pose_mode(k)``. True height is the requested ``height_cm``; raw height is
    ``measure_height(..., calibration=None).raw_height_cm``. Every pair is kept in the provenance.
    """

    rows = phantom_rows(3 * n, seed, population)
    raw, true, modes, data, skipped = [], [], [], [], []
    for i, (_, row) in enumerate(rows.iterrows()):
        if len(raw) == n:
            break
        attrs = {k: (row[k] if k == "sex" else float(row[k])) for k in REQUIRED}
        pseed = PHANTOM_SEED_BASE + 1000 * seed + i
        mode = pose_mode(len(raw))
        try:
            ph = build_phantom(attrs, seed=pseed, pose=mode)
        except ValueError as e:  # body composition the phantom cannot reach: skip the row, keep a record
            skipped.append({"row": str(row["id"]), "phantom_seed": pseed, "error": str(e)})
            continue
        res = measure_height(ph.labels.data, ph.labels.affine, calibration=None)
        if res.raw_height_cm is None:
            raise RuntimeError(f"calibration phantom {i} (seed {pseed}, {mode}) not measurable: {res.reason}")
        raw.append(res.raw_height_cm)
        true.append(float(row["height_cm"]))
        modes.append(mode)
        data.append({"row": str(row["id"]), "phantom_seed": pseed, "pose_mode": mode, "pose": ph.pose.as_dict(),
                     "sex": str(row["sex"]), "true_height_cm": float(row["height_cm"]),
                     "raw_height_cm": res.raw_height_cm})
        if progress:
            print(f"{len(raw)}/{n} {mode:8s} true {true[-1]:6.1f} raw {raw[-1]:6.1f}", flush=True)
    if len(raw) < n:
        raise RuntimeError(f"only {len(raw)} of {n} calibration phantoms could be built from {population}")
    try:
        pop = str(Path(population).resolve().relative_to(DEFAULT_POPULATION.parents[2]))
    except ValueError:
        pop = str(population)
    provenance = {
        "maker": "vctcore.phantom.calibrate_height.fit_height_calibration", **provenance_record(),
        "population": pop, "sample_seed": int(seed), "n": int(n),
        "phantom_seeds": [d["phantom_seed"] for d in data],
        "pose_modes": "supine (random hip flexion 0-14 deg, foot plantar flexion 15-45 deg, arms sides/folded); "
                      "every fourth phantom standing",
        "true_height": "requested height_cm of the phantom (crown to sole when standing)",
        "data": data,
        "skipped_rows": skipped,
    }
    return HeightCalibration.fit(raw, true, poses=modes, provenance=provenance)


def main(argv: Sequence[str] | None = None) -> None:
    """Refit the shipped default calibration (writes ``height_calibration.json``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="number of phantoms (about 2 s each)")
    ap.add_argument("--seed", type=int, default=4242, help="population sample seed")
    ap.add_argument("--out", type=Path, default=DEFAULT_CALIBRATION_PATH)
    args = ap.parse_args(argv)
    cal = fit_height_calibration(args.n, args.seed, progress=True)
    cal.to_json(args.out)
    print(f"slope {cal.slope:.5f} intercept {cal.intercept:.3f} cm rmse {cal.rmse_cm:.3f} cm (n={cal.n}) -> {args.out}")



if __name__ == "__main__":
    main()
