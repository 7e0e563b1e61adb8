"""Benchmark: how cohort generation scales across executors (vctcore.executors). Prints JSON.

    python bench/scale.py [--checkpoint DIR | --tiny] [--n 4] [--steps K] [--no-ray]
                          [--gpu-rate P] [--gpus 1,2,4,8,16] [--projected-n 10000]

Generates the same ``--n`` patients with the local executor on 1 and 2 workers and with a local Ray cluster
of 2 workers, each into a fresh cohort, and reports patients per second (wall time of the whole
``generate_cohort`` call: worker start and each worker's generator load included, the driver's own load
not), and whether the three cohorts hold the same voxels. ``--tiny`` uses an untrained generator on a
small grid (tests/untrained_generator.py) to check the machinery in seconds.

The projection for N GPU workers takes a measured per-GPU rate (``--gpu-rate``, patients per second of
one GPU running ``vct generate``, e.g. from ``bench/generate.py --device cuda``) and adds what this
machine measures of the other costs: a worker's NIfTI write of one patient (each worker writes its own
patients, so it adds to the GPU's time per patient; the shared filesystem must take ``write_mb_per_s``),
the driver's bookkeeping (``attributes.csv`` of ``--projected-n`` rows, rewritten at most once a second),
and the generator load each worker pays once.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _generator(args: argparse.Namespace, tmp: Path) -> Path | None:
    if not args.tiny:
        return Path(args.checkpoint) if args.checkpoint else None
    sys.path.insert(0, str(ROOT / "tests"))
    from untrained_generator import write_untrained_generator

    return write_untrained_generator(tmp / "tiny_generator")


def _run(gen, table, out: Path, kind: str, workers: int, steps: int | None) -> dict:
    from vctcore.executors import ExecutorSpec, make_executor
    from vctcore.synthetic_cohort import generate_cohort

    t0 = time.perf_counter()
    with make_executor(ExecutorSpec(kind, workers)) as ex:
        started = time.perf_counter()
        generate_cohort(gen, table, seed=0, out=out, steps=steps, executor=ex, device="cpu")
        wall = time.perf_counter() - started
    return {"executor": kind, "workers": workers, "wall_s": round(wall, 2),
            "patients_per_second": round(len(table) / wall, 4),
            **({"cluster_start_s": round(started - t0, 2)} if kind == "ray" else {})}


def _same_voxels(a: Path, b: Path) -> bool:
    import nibabel as nib
    import numpy as np

    for f in sorted((a / "patients").glob("*/*.nii.gz")):
        other = b / f.relative_to(a)
        if not np.array_equal(np.asarray(nib.load(f).dataobj), np.asarray(nib.load(other).dataobj)):
            return False
    return (a / "attributes.csv").read_text() == (b / "attributes.csv").read_text()


def _costs(gen, table, tmp: Path, projected_n: int) -> dict:
    """Per-patient write time and size, the driver's attributes.csv write at ``projected_n`` rows, the load."""
    import pandas as pd

    from vctcore.cohort import CohortWriter, write_patient
    from vctcore.generator import Generator

    t0 = time.perf_counter()
    Generator.from_pretrained(gen.path, device="cpu")
    load_s = time.perf_counter() - t0
    (p,) = gen.generate(table.iloc[:1], seed=0)
    t0 = time.perf_counter()
    d = write_patient(tmp / "write_probe", ct=p.ct, seg=p.seg)
    write_s = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in d.iterdir())
    big = pd.concat([table] * (projected_n // len(table) + 1), ignore_index=True).iloc[:projected_n]
    writer = CohortWriter(tmp / "driver_probe", {"maker": "bench.scale"})
    t0 = time.perf_counter()
    writer.write_attributes(big)
    csv_s = time.perf_counter() - t0
    return {"generator_load_s": round(load_s, 2), "write_s_per_patient": round(write_s, 3),
            "bytes_per_patient": size, "driver_csv_write_s_at_projected_n": round(csv_s, 4)}


def _projection(rate: float, gpus: list[int], costs: dict, n: int) -> list[dict]:
    """Patients per second and wall time for ``n`` patients on each GPU count: GPUs x the GPU's rate with
    its own NIfTI write, the generator load paid once per run. The driver rewrites attributes.csv at most once
    a second (synthetic_cohort.ATTRIBUTES_EVERY_S), so it limits only when that write nears a second."""
    per_gpu = 1.0 / (1.0 / rate + costs["write_s_per_patient"])
    driver_busy = costs["driver_csv_write_s_at_projected_n"]
    rows = []
    for g in gpus:
        pps = g * per_gpu
        rows.append({"gpus": g, "patients_per_second": round(pps, 2),
                     "wall_s_for_projected_n": round(costs["generator_load_s"] + n / pps, 1),
                     "write_mb_per_s": round(pps * costs["bytes_per_patient"] / 1e6, 1),
                     "limited_by": "driver" if driver_busy > 0.5 else "gpu + write"})
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=None, help="generator directory (default: the shipped one)")
    ap.add_argument("--tiny", action="store_true", help="an untrained generator on a small grid (machinery check)")
    ap.add_argument("--n", type=int, default=4, help="patients per run")
    ap.add_argument("--steps", type=int, default=None, help="sampler steps (default: the checkpoint's)")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray run")
    ap.add_argument("--gpu-rate", type=float, default=None, help="measured patients per second of one GPU")
    ap.add_argument("--gpus", default="1,2,4,8,16", help="GPU counts to project")
    ap.add_argument("--projected-n", type=int, default=10000, help="cohort size of the projection")
    args = ap.parse_args(argv)

    from vctcore.assets import default_population
    from vctcore.executors import ray_available
    from vctcore.generator import Generator
    from vctcore.population import PopulationSpec
    from vctcore.provenance import cpu_model

    with tempfile.TemporaryDirectory(prefix="vct_scale_") as d:
        tmp = Path(d)
        gen = Generator.from_pretrained(_generator(args, tmp), device="cpu")
        table = PopulationSpec.from_yaml(default_population()).sample(args.n, seed=0)
        plan = [("local", 1), ("local", 2)] + ([] if args.no_ray or not ray_available() else [("ray", 2)])
        runs = [_run(gen, table, tmp / f"{k}{w}", k, w, args.steps) for k, w in plan]
        same = all(_same_voxels(tmp / "local1", tmp / f"{k}{w}") for k, w in plan[1:])
        costs = _costs(gen, table, tmp, args.projected_n)
    out = {"benchmark": "scale", "cpu": cpu_model(), "cores": os.cpu_count(), "generator": str(gen.path),
           "tiny": args.tiny, "n": args.n, "steps": args.steps or gen.cfg.diffusion.sample_steps, "runs": runs,
           "same_voxels_across_runs": same, **costs, "projected_n": args.projected_n,
           "projection": (_projection(args.gpu_rate, [int(g) for g in args.gpus.split(",")], costs, args.projected_n)
                          if args.gpu_rate else None),
           "note": "wall_s includes starting the workers and each worker's generator load; on few patients that "
                   "start dominates. Scaling is limited by the generator load per worker (once per run), each "
                   "patient's NIfTI write on its worker (shared-filesystem bandwidth: bytes_per_patient x rate), and "
                   "the driver, which records finished patients (attributes.csv once a second: driver_csv_write_s_at_projected_n)."}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
