"""The trial's patient store: every phantom pool, reconstructed and synthetic patient is made once.

Layout under the store's root (default ``<workspace>/cache``)::

    phantoms/<key>/                      a phantom cohort (vctcore.phantom layout), key = spec, n, seed, grid
    synthetic/<generator>/<key>/         ct.nii.gz, seg.nii.gz, meta.json of one synthetic patient
    reconstructed/<generator>/<key>/     the same for one autoencoder round trip of a real patient

``<generator>`` is a digest of the checkpoint's file hashes. A synthetic patient's key is a digest of
its conditioning values, its seed, the sampler settings; its seed is derived from the generation seed,
the conditioning values and the replica number, so two trials (or two tasks) that ask for the same
patient share it. A reconstruction's key is a digest of the real CT and segmentation files and of the
attributes the post-processor reads. ``meta.json`` is written last: a patient without it is remade.

The store's executor (:mod:`vctcore.executors`) builds the phantom pools and, when it is distributed (Ray),
makes the synthetic and reconstructed patients, each worker loading the generator once and writing its
patients into the store itself; locally they are made in this process with the generator already loaded.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vctcore.cohort import _atomic_text
from vctcore.executors import Executor
from vctcore.executors.loaders import GeneratorLoader
from vctcore.executors.local import LocalExecutor
from vctcore.models.checkpoint import sha256_file
from vctcore.progress import Progress

META = "meta.json"


def digest(obj: Any, n: int = 16) -> str:
    """First ``n`` hex digits of the sha256 of ``obj`` as canonical JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def _plain(v: Any) -> Any:
    if isinstance(v, (np.floating, float)):
        return round(float(v), 4)
    if isinstance(v, np.integer):
        return int(v)
    return v


def synthetic_seed(seed: int, conditions: dict[str, Any], replica: int) -> int:
    """Seed of one synthetic patient (a 63-bit integer) from the generation seed, its conditioning values
    and its replica number."""
    return int(digest([seed, conditions, replica], 15), 16)


class PatientStore:
    """Content-addressed patients under ``root`` (see the module docstring). ``executor``: where patients
    are made (default: local); ``device``: the device its workers load the generator on."""

    def __init__(self, root: str | os.PathLike, executor: Executor | None = None, device: str = "auto") -> None:
        self.root = Path(root).resolve()
        self.executor, self.device = executor, device

    def driver_device(self, device: str) -> str:
        """The device this process loads the trial's generator on: ``device``, or the CPU when the
        patients are made by distributed workers (the driver then only reads the generator's files)."""
        return "cpu" if self.executor is not None and self.executor.distributed else device

    def _generator_run(self, generator) -> tuple[Executor, GeneratorLoader, bool]:
        """(executor, setup, gpu) for tasks that need the generator: this process and ``generator`` unless
        the store's executor is distributed."""
        if self.executor is None or not self.executor.distributed:
            return LocalExecutor(1), GeneratorLoader(generator.path, str(generator.device), generator), False
        return self.executor, GeneratorLoader(generator.path, self.device), self.device != "cpu"

    # -- phantom pools -------------------------------------------------------------------------------
    def phantom_pool(self, spec_path: Path, *, n: int, seed: int, workers: int = 1,
                     progress: Progress | None = None) -> Path:
        """A cohort of ``n`` phantoms sampled from the PopulationSpec at ``spec_path`` (built or resumed)."""
        from vctcore.phantom.builder import DEFAULT_GRID
        from vctcore.phantom.cohort import build_cohort
        from vctcore.population import PopulationSpec

        spec = PopulationSpec.from_yaml(spec_path)
        key = digest([spec.to_dict(), n, seed, list(DEFAULT_GRID.shape), list(DEFAULT_GRID.spacing_mm)])
        out = self.root / "phantoms" / key
        done = out / "attributes.csv"
        if done.exists() and len(pd.read_csv(done)) == n and (out / ".complete").exists():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out.parent / f".{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per pool; a second trial waits, then finds it built
            if not (out / ".complete").exists():
                build_cohort(spec, n=n, seed=seed, out=out, workers=max(1, workers), executor=self.executor,
                             progress=None if progress is None else (lambda d, t, label="": progress(d, t, label)))
                (out / ".complete").write_text("")
        return out

    # -- synthetic patients --------------------------------------------------------------------------
    def synthetic(self, generator, requests: pd.DataFrame, *, seed: int, conditioning: Sequence[str],
                  steps: int | None = None, guidance: float | None = None,
                  progress: Progress | None = None) -> pd.DataFrame:
        """Make (or find) one synthetic patient per row of ``requests`` (columns ``source_id``, ``replica``
        and the ``conditioning`` attributes). Returns ``requests`` with ``patient_id``, ``dir`` and
        ``seed`` added; ``patient_id`` is unique across sources and trials (``S`` + the patient's key)."""
        gen_key = digest(generator.checkpoint_sha256)
        rows = []
        todo = []
        for rec in requests.to_dict("records"):
            cond = {c: _plain(rec.get(c)) for c in conditioning}
            s = synthetic_seed(seed, cond, int(rec["replica"]))
            key = digest({"cond": cond, "seed": s, "steps": steps, "guidance": guidance})
            d = self.root / "synthetic" / gen_key / key
            rows.append({**rec, "patient_id": f"S{key[:12]}", "dir": str(d), "seed": s})
            if not (d / META).exists():
                todo.append((str(d), {"kind": "synthetic", "conditions": cond, "seed": s, "steps": steps,
                                      "guidance": guidance, "checkpoint_sha256": generator.checkpoint_sha256,
                                      "source_id": str(rec["source_id"]), "replica": int(rec["replica"])}))
        self._make(generator, _synthetic_task, todo, len(rows), progress)
        return pd.DataFrame(rows)

    # -- reconstructions -----------------------------------------------------------------------------
    def reconstructed(self, generator, real_dir: Path, rows: pd.DataFrame, *,
                      progress: Progress | None = None) -> pd.DataFrame:
        """Autoencoder round trips (encode + decode) of the real patients ``rows['id']`` of the cohort
        ``real_dir``; the post-processor reads each patient's recorded attributes. Returns
        ``source_id``, ``patient_id``, ``dir`` per row."""
        gen_key = digest(generator.checkpoint_sha256)
        post_names = list(generator.post.cfg.condition_on) if generator.post is not None else []
        out, todo = [], []
        for rec in rows.to_dict("records"):
            pdir = Path(real_dir) / "patients" / str(rec["id"])
            attrs = {k: _plain(rec.get(k)) for k in post_names}
            key = digest({"ct": sha256_file(pdir / "ct.nii.gz"), "seg": sha256_file(pdir / "seg.nii.gz"),
                          "attrs": attrs})
            d = self.root / "reconstructed" / gen_key / key
            out.append({"source_id": str(rec["id"]), "patient_id": f"R{key[:12]}", "dir": str(d)})
            if not (d / META).exists():
                todo.append((str(d), {"kind": "reconstructed", "source": str(pdir.resolve()),
                                      "source_id": str(rec["id"]), "attributes": attrs,
                                      "checkpoint_sha256": generator.checkpoint_sha256}))
        self._make(generator, _reconstruct_task, todo, len(out), progress)
        return pd.DataFrame(out)

    def _make(self, generator, task, todo: list[tuple[str, dict[str, Any]]], total: int,
              progress: Progress | None) -> None:
        """Run ``task`` over the ``todo`` (directory, meta) pairs on the store's executor with the generator
        loaded once per worker; ``total`` counts the cached patients too (progress: "cached", then each
        made patient's source id)."""
        done = total - len(todo)
        if progress:
            progress(done, total, "cached" if done else "")
        executor, setup, gpu = self._generator_run(generator)
        for k, _ in executor.map(task, todo, setup=setup, gpu=gpu):
            done += 1
            if progress:
                progress(done, total, todo[k][1]["source_id"])

    @staticmethod
    def _write(d: Path, ct, seg, meta: dict[str, Any]) -> None:
        """Write a patient into a private temporary directory, then rename it to ``d``: two trials making
        the same patient at once never mix their files (the second finds it made and drops its copy)."""
        from vctcore.volume import write_ct, write_labels

        d.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=d.parent, prefix=f".{d.name}."))
        try:
            write_ct(ct, tmp / "ct.nii.gz")
            write_labels(seg, tmp / "seg.nii.gz")
            _atomic_text(tmp / META, json.dumps(meta, indent=2, default=str))
            if d.exists() and not (d / META).exists():
                shutil.rmtree(d, ignore_errors=True)  # left half-written by a killed run
            try:
                os.rename(tmp, d)
            except OSError:
                if not (d / META).exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _synthetic_task(generator, task: tuple[str, dict[str, Any]]) -> float:
    """One synthetic patient made and written into the store (an executor task); returns its seconds."""
    d, meta = task
    t0 = time.perf_counter()
    (p,) = generator.generate(pd.DataFrame([meta["conditions"]]), seed=meta["seed"], steps=meta["steps"],
                              guidance_scale=meta["guidance"])
    seconds = round(time.perf_counter() - t0, 2)
    PatientStore._write(Path(d), p.ct, p.seg, {**meta, "seconds": seconds})
    return seconds


def _reconstruct_task(generator, task: tuple[str, dict[str, Any]]) -> float:
    """One autoencoder round trip made and written into the store (an executor task); returns its seconds."""
    from vctcore.fidelity.recon import reconstruct
    from vctcore.labels import MERGED_CLASSES
    from vctcore.volume import read_ct, read_labels

    d, meta = task
    t0 = time.perf_counter()
    pdir = Path(meta["source"])
    ct = read_ct(pdir / "ct.nii.gz")
    seg = read_labels(pdir / "seg.nii.gz", names=MERGED_CLASSES, like=ct)
    rct, rseg = reconstruct(generator, ct, seg, meta["attributes"])
    seconds = round(time.perf_counter() - t0, 2)
    PatientStore._write(Path(d), rct, rseg, {**meta, "seconds": seconds})
    return seconds
