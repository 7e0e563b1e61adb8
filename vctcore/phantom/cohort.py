"""Build a whole phantom cohort from a population spec (the default "real" cohort of a trial)."""
from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pandas as pd

from vctcore.cohort import CohortWriter, read_attributes
from vctcore.phantom.builder import DEFAULT_GRID, REQUIRED, PhantomGrid, build_phantom, check_attributes
from vctcore.population import PopulationSpec

Progress = Callable[[int, int, str], None]


def build_cohort(spec: PopulationSpec, *, n: int, seed: int, out: str | os.PathLike, pose: str = "supine",
                 grid: PhantomGrid = DEFAULT_GRID, progress: Progress | None = None) -> pd.DataFrame:
    """Sample ``n`` patients from ``spec`` (seeded) and write their phantoms to ``out``.

    Rows outside the phantom's support are replaced by further draws (recorded in cohort.json).
    Patients already on disk are kept (resume). Returns the attribute table that was written,
    with the measured ``body_volume_l`` of each phantom.
    """
    if n < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    rows = spec.sample(max(2 * n, n + 20), seed=seed)
    writer = CohortWriter(out, {"maker": "vctcore.phantom", "population": spec.to_dict(), "n": n, "seed": seed,
                                "pose": pose, "grid": {"shape": list(grid.shape), "spacing_mm": list(grid.spacing_mm)}})
    old = _previous(out)
    kept, skipped = [], []
    child_seeds = np.random.SeedSequence(seed).spawn(len(rows))
    for i, (_, row) in enumerate(rows.iterrows()):
        if len(kept) == n:
            break
        pid = f"P{len(kept):04d}"
        attrs = {k: row[k] for k in REQUIRED}
        try:
            check_attributes(attrs)
        except ValueError as err:
            skipped.append({"row": int(i), "reason": str(err)})
            continue
        record = {"id": pid, **attrs}
        patient_seed = int(child_seeds[i].generate_state(1)[0])
        if writer.has(pid) and pid in old.index:
            record["body_volume_l"] = float(old.loc[pid, "body_volume_l"])
        else:
            try:
                ph = build_phantom(attrs, seed=patient_seed, pose=pose, grid=grid)
            except ValueError as err:
                skipped.append({"row": int(i), "reason": str(err)})
                continue
            writer.add(pid, ct=ph.ct, seg=ph.seg, labels=ph.labels)
            record["body_volume_l"] = round(ph.report["body_volume_l"], 3)
        record["seed"] = patient_seed
        kept.append(record)
        writer.write_attributes(pd.DataFrame(kept))
        if progress:
            progress(len(kept), n, pid)
    if len(kept) < n:
        raise ValueError(f"only {len(kept)} of {n} sampled patients are inside the phantom's support; "
                         "widen or adjust the population spec")
    writer.update_provenance(skipped_rows=skipped)
    return pd.DataFrame(kept)


def _previous(out: str | os.PathLike) -> pd.DataFrame:
    try:
        return read_attributes(out).set_index("id")
    except FileNotFoundError:
        return pd.DataFrame(columns=["body_volume_l"])
