"""Build a whole phantom cohort from a population spec (the default "real" cohort of a trial)."""
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from vctcore.cohort import CohortWriter, read_attributes
from vctcore.executors import Executor, in_order
from vctcore.executors.local import LocalExecutor
from vctcore.phantom.builder import DEFAULT_GRID, REQUIRED, Phantom, PhantomGrid, build_phantom, check_attributes
from vctcore.population import PopulationSpec
from vctcore.progress import Progress

#: one phantom to build: (attributes, patient seed, pose, grid)
_Task = tuple[dict[str, Any], int, str, PhantomGrid]


def build_cohort(spec: PopulationSpec, *, n: int, seed: int, out: str | os.PathLike, pose: str = "supine",
                 grid: PhantomGrid = DEFAULT_GRID, progress: Progress | None = None,
                 workers: int = 1, executor: Executor | None = None) -> pd.DataFrame:
    """Sample ``n`` patients from ``spec`` (seeded) and write their phantoms to ``out``.

    Rows outside the phantom's support are replaced by further draws (recorded in cohort.json).
    Patients already on disk are kept (resume). ``executor`` (default: ``workers`` local processes)
    builds the phantoms ahead of this loop, which writes them; the cohort written is the same for any
    executor and worker count (each patient has its own seed, and patients are numbered in draw order).
    Returns the attribute table that was written, with the measured ``body_volume_l`` of each phantom.
    """
    if n < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    executor = executor or LocalExecutor(workers)
    rows = spec.sample(max(2 * n, n + 20), seed=seed)
    writer = CohortWriter(out, {"maker": "vctcore.phantom", "population": spec.to_dict(), "n": n, "seed": seed,
                                "pose": pose, "grid": {"shape": list(grid.shape), "spacing_mm": list(grid.spacing_mm)}})
    old = _previous(out)
    child_seeds = np.random.SeedSequence(seed).spawn(len(rows))
    # rows inside the support, in draw order; the others are skipped (recorded up to the last row used)
    tasks: list[tuple[int, _Task]] = []
    unsupported: list[dict[str, Any]] = []
    for i, (_, row) in enumerate(rows.iterrows()):
        attrs = {k: row[k] for k in REQUIRED}
        try:
            check_attributes(attrs)
        except ValueError as err:
            unsupported.append({"row": int(i), "reason": str(err)})
            continue
        tasks.append((i, (attrs, int(child_seeds[i].generate_state(1)[0]), pose, grid)))

    kept: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    bound = len(rows)  # rows drawn so far (all of them if the cohort is not filled)
    built: Iterator[Phantom | str] | None = None  # one result per task from the first one not on disk
    try:
        for j, (i, (attrs, patient_seed, _, _)) in enumerate(tasks):
            if len(kept) == n:
                break
            bound = i + 1
            pid = f"P{len(kept):04d}"
            if built is None and not writer.has(pid):
                built = _built(tasks[j:], executor)
            result = next(built) if built is not None else None
            record = {"id": pid, **attrs}
            if writer.has(pid) and pid in old.index:
                record["body_volume_l"] = float(old.loc[pid, "body_volume_l"])
            else:
                if result is None:  # the patient's files exist but the table lacks it: build it here
                    result = _build_one(tasks[j][1])
                if isinstance(result, str):
                    failed.append({"row": int(i), "reason": result})
                    continue
                writer.add(pid, ct=result.ct, seg=result.seg, labels=result.labels)
                record["body_volume_l"] = round(result.report["body_volume_l"], 3)
            record["seed"] = patient_seed
            kept.append(record)
            writer.write_attributes(pd.DataFrame(kept))
            if progress:
                progress(len(kept), n, pid)
    finally:
        if built is not None:
            built.close()  # stops the workers
    if len(kept) < n:
        raise ValueError(f"only {len(kept)} of {n} sampled patients are inside the phantom's support; "
                         "widen or adjust the population spec")
    skipped = sorted([s for s in unsupported if s["row"] < bound] + failed, key=lambda s: s["row"])
    writer.update_provenance(skipped_rows=skipped)
    return pd.DataFrame(kept)


def _build_one(task: _Task) -> Phantom | str:
    """One phantom, or the reason it cannot be built (its attributes are inconsistent)."""
    attrs, patient_seed, pose, grid = task
    try:
        return build_phantom(attrs, seed=patient_seed, pose=pose, grid=grid)
    except ValueError as err:
        return str(err)


def _build_task(_: None, task: _Task) -> Phantom | str:
    """:func:`_build_one` as an executor task."""
    return _build_one(task)


def _built(tasks: list[tuple[int, _Task]], executor: Executor) -> Iterator[Phantom | str]:
    """Each task's phantom in order, built by ``executor`` (lazily in this process, or ahead by workers)."""
    results = executor.map(_build_task, [task for _, task in tasks], batch=1)  # the cohort may fill early
    try:
        yield from in_order(results)
    finally:
        results.close()  # stops the workers when the cohort is full before the tasks run out


def _previous(out: str | os.PathLike) -> pd.DataFrame:
    try:
        return read_attributes(out).set_index("id")
    except FileNotFoundError:
        return pd.DataFrame(columns=["body_volume_l"])
