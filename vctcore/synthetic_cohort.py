"""Write a synthetic cohort with the generator, in the same layout as phantom cohorts (resumable).

Rows are sampled from a PopulationSpec (seeded) or given as a table; patient ``i`` always gets the
seed ``patient_seed(seed, i)``, so a rerun skips finished patients and regenerates only the rest,
identically. ``cohort.json`` records the checkpoint (path, sha256 of every file), seed, steps,
guidance, support warnings, the executor and the seconds per patient made by the last run. Patients
may be made by any :mod:`vctcore.executors` executor; the cohort is the same file for file.
"""
from __future__ import annotations

import os
import time

import pandas as pd

from vctcore.cohort import CohortWriter, read_attributes, write_patient
from vctcore.executors import Executor
from vctcore.executors.loaders import GeneratorLoader
from vctcore.executors.local import LocalExecutor
from vctcore.generator import Generator, patient_seed
from vctcore.progress import Progress

#: the least seconds between two rewrites of attributes.csv while patients are made
ATTRIBUTES_EVERY_S = 1.0


def generate_cohort(generator: Generator, table: pd.DataFrame, *, seed: int, out: str | os.PathLike,
                    steps: int | None = None, guidance_scale: float | None = None, sampler: str | None = None,
                    provenance: dict | None = None, progress: Progress | None = None,
                    executor: Executor | None = None, device: str | None = None,
                    composition: bool = True) -> pd.DataFrame:
    """Generate one patient per row of ``table`` into ``out``; returns the written attribute table.
    ``composition``: steer toward the rows' body composition when the generator has a guide
    (:meth:`Generator.generate`).

    ``executor`` (default: this process) runs the patients; each of its workers loads the generator from
    ``generator.path`` once (a worker in this process uses ``generator``) on ``device`` (default: the
    generator's own device locally, "auto" on a distributed executor) and writes its patients' files
    itself. ``attributes.csv`` lists the finished patients in table order, rewritten at most every
    :data:`ATTRIBUTES_EVERY_S` seconds as they finish (so the driver's cost per patient stays flat in
    cohorts of thousands), then all rows."""
    table = table.reset_index(drop=True).copy()
    table["id"] = [f"S{i:04d}" for i in range(len(table))]
    table["seed"] = [patient_seed(seed, i) for i in range(len(table))]
    executor = executor or LocalExecutor(1)
    device = device or ("auto" if executor.distributed else str(generator.device))
    writer = CohortWriter(out, _provenance(generator, table, seed, steps, guidance_scale, sampler, executor,
                                           device, {"composition": composition and generator.guide is not None,
                                                    **(provenance or {})}))
    try:
        old = read_attributes(out).set_index("id")
    except FileNotFoundError:
        old = pd.DataFrame()
    finished = [bool(writer.has(pid) and pid in old.index) for pid in table["id"]]
    todo = [i for i in range(len(table)) if not finished[i]]
    root = writer.root.resolve()
    tasks = [(i, table.iloc[[i]], seed, steps, guidance_scale, sampler, composition,
              str(root / "patients" / table.loc[i, "id"])) for i in todo]
    loader = GeneratorLoader(generator.path, device, generator if not executor.distributed else None)
    start = last = time.perf_counter()
    for k, _ in executor.map(_make_patient, tasks, setup=loader, gpu=device != "cpu"):
        finished[todo[k]] = True
        if time.perf_counter() - last >= ATTRIBUTES_EVERY_S:  # a rerun remakes the unrecorded few, identically
            writer.write_attributes(table[finished])
            last = time.perf_counter()
        if progress is not None:
            progress(sum(finished), len(table), table.loc[todo[k], "id"])
    writer.write_attributes(table)
    seconds = time.perf_counter() - start
    writer.update_provenance(seconds=round(seconds, 1),
                             **({"seconds_per_patient": round(seconds / len(todo), 2)} if todo else {}))
    return table


def _provenance(generator: Generator, table: pd.DataFrame, seed: int, steps: int | None,
                guidance_scale: float | None, sampler: str | None, executor: Executor, device: str,
                extra: dict | None) -> dict:
    """cohort.json's record of what makes this cohort (the executor is recorded; it changes no voxel)."""
    d = generator.cfg.diffusion
    return {
        "maker": "vctcore.generator", "n": len(table), "seed": seed, "steps": steps or d.sample_steps,
        "guidance_scale": d.guidance_scale if guidance_scale is None else guidance_scale,
        "sampler": sampler or d.sampler,
        **({"guidance_interval": list(d.guidance_interval)} if d.guidance_interval else {}),
        "checkpoint": str(generator.path), "checkpoint_sha256": generator.checkpoint_sha256,
        "device": device if executor.distributed else str(generator.device),
        "support_warnings": generator.support_warnings(table),
        "executor": executor.describe(), **(extra or {})}


def _make_patient(generator: Generator, task: tuple) -> float:
    """One patient made and written into its folder (an executor task); returns the seconds it took."""
    i, row, seed, steps, guidance_scale, sampler, composition, patient_dir = task
    t0 = time.perf_counter()
    (p,) = generator.generate(row, seed=seed, steps=steps, guidance_scale=guidance_scale, sampler=sampler,
                              index_offset=i, composition=composition)
    write_patient(patient_dir, ct=p.ct, seg=p.seg)
    return time.perf_counter() - t0
