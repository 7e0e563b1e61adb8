"""Write a synthetic cohort with the generator, in the same layout as phantom cohorts (resumable).

Rows are sampled from a PopulationSpec (seeded) or given as a table; patient ``i`` always gets the
seed ``patient_seed(seed, i)``, so a rerun skips finished patients and regenerates only the rest,
identically. ``cohort.json`` records the checkpoint (path, sha256 of every file), seed, steps,
guidance, support warnings and the seconds per patient made by the last run.
"""
from __future__ import annotations

import os
import time

import pandas as pd

from vctcore.cohort import CohortWriter, read_attributes
from vctcore.generator import Generator, patient_seed
from vctcore.progress import Progress


def generate_cohort(generator: Generator, table: pd.DataFrame, *, seed: int, out: str | os.PathLike,
                    steps: int | None = None, guidance_scale: float | None = None, sampler: str | None = None,
                    provenance: dict | None = None, progress: Progress | None = None) -> pd.DataFrame:
    """Generate one patient per row of ``table`` into ``out``; returns the written attribute table."""
    table = table.reset_index(drop=True).copy()
    table["id"] = [f"S{i:04d}" for i in range(len(table))]
    table["seed"] = [patient_seed(seed, i) for i in range(len(table))]
    warnings = generator.support_warnings(table)
    writer = CohortWriter(out, {
        "maker": "vctcore.generator", "n": len(table), "seed": seed,
        "steps": steps or generator.cfg.diffusion.sample_steps,
        "guidance_scale": generator.cfg.diffusion.guidance_scale if guidance_scale is None else guidance_scale,
        "sampler": sampler or generator.cfg.diffusion.sampler,
        **({"guidance_interval": list(generator.cfg.diffusion.guidance_interval)}
           if generator.cfg.diffusion.guidance_interval else {}),
        "checkpoint": str(generator.path), "checkpoint_sha256": generator.checkpoint_sha256,
        "device": str(generator.device), "support_warnings": warnings, **(provenance or {})})
    try:
        old = read_attributes(out).set_index("id")
    except FileNotFoundError:
        old = pd.DataFrame()
    done = made = 0
    start = time.perf_counter()
    for i in range(len(table)):
        pid = table.loc[i, "id"]
        if writer.has(pid) and pid in old.index:
            done += 1
            continue
        row = table.iloc[[i]]
        (p,) = generator.generate(row, seed=seed, steps=steps, guidance_scale=guidance_scale, sampler=sampler,
                                  index_offset=i)
        writer.add(pid, ct=p.ct, seg=p.seg)
        done += 1
        made += 1
        writer.write_attributes(table.iloc[: i + 1])
        if progress is not None:
            progress(done, len(table), pid)
    writer.write_attributes(table)
    seconds = time.perf_counter() - start
    writer.update_provenance(seconds=round(seconds, 1),
                             **({"seconds_per_patient": round(seconds / made, 2)} if made else {}))
    return table
