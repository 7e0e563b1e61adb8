"""Benchmark: wall time per stage of the seed paper's two trials (or any trial configs), run one after
the other as a user would, and the CPU that ran them. Prints JSON.

The trials share one patient store (``--cache``): the second trial reuses the phantom pool, the
measurements and the synthetic and reconstructed patients of test patients it shares with the first.
Run it on an empty ``--cache`` to time a fresh checkout; on a warm one it times the resume path.

    python bench/trial.py [--config assets/trials/paper_bfp.yaml --config assets/trials/paper_mmp.yaml]
                          [--out-root workspace/trials] [--cache workspace/cache]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from vctcore.assets import trials_dir

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIGS = [trials_dir() / "paper_bfp.yaml", trials_dir() / "paper_mmp.yaml"]


def main(argv: list[str] | None = None) -> dict:
    from vctcore.devices import cpu_model
    from vctcore.trial.run import default_cache, run_trial

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", type=Path, help="trial YAML (repeatable; default: the paper's two)")
    p.add_argument("--out-root", type=Path, default=REPO / "workspace" / "trials")
    p.add_argument("--cache", type=Path, default=None)
    args = p.parse_args(argv)
    configs = args.config or DEFAULT_CONFIGS
    t0 = time.perf_counter()
    trials = {}
    for cfg in configs:
        result = run_trial(cfg, args.out_root / cfg.stem, cache=args.cache or default_cache())
        prov = result.summary["provenance"]
        trials[result.name] = {"stage_seconds": prov["stage_seconds"], "wall_seconds": prov["wall_seconds"],
                               "out": str(result.root)}
    report = {"benchmark": "trial", "cpu": cpu_model(), "trials": trials,
              "total_seconds": round(time.perf_counter() - t0, 1),
              "total_minutes": round((time.perf_counter() - t0) / 60.0, 1)}
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
