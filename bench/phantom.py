"""Benchmark: seconds per phantom at the default grid on one core, and peak memory. Prints JSON."""
from __future__ import annotations

import json
import os
import platform
import resource
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from vctcore.phantom import DEFAULT_GRID, build_phantom  # noqa: E402
from vctcore.phantom.builder import REQUIRED, supported_rows  # noqa: E402
from vctcore.assets import default_population  # noqa: E402
from vctcore.population import PopulationSpec  # noqa: E402


def main(n: int = 10, seed: int = 0) -> dict:
    rows = supported_rows(PopulationSpec.from_yaml(default_population()).sample(3 * n, seed=seed))
    attrs = [{k: row[k] for k in REQUIRED} for _, row in rows.iterrows()]
    times, passes = [], []
    for i, a in enumerate(attrs[:n]):
        t = time.perf_counter()
        ph = build_phantom(a, seed=i)
        times.append(time.perf_counter() - t)
        passes.append(ph.report["calibration_passes"])
    return {
        "benchmark": "phantom", "n": len(times), "grid_shape": list(DEFAULT_GRID.shape),
        "spacing_mm": list(DEFAULT_GRID.spacing_mm), "s_per_phantom_mean": sum(times) / len(times),
        "s_per_phantom_max": max(times), "target_s": 2.0, "calibration_passes_mean": sum(passes) / len(passes),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "threads": os.environ["OMP_NUM_THREADS"], "machine": platform.machine(), "cpu_count": os.cpu_count(),
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
