"""``vct phantom``: write a digital-human phantom cohort."""
from __future__ import annotations

import argparse
import os
import time

from vctcore.cli.common import DEFAULT_POPULATION, CLIError, load_population, progress_run


def run(args: argparse.Namespace) -> int:
    from vctcore.phantom.cohort import build_cohort

    spec = load_population(args.population)
    if args.n < 1:
        raise CLIError(f"--n must be at least 1, got {args.n}")
    if args.workers < 0:
        raise CLIError(f"--workers must be 0 (every core) or more, got {args.workers}")
    workers = args.workers or os.cpu_count() or 1
    start = time.perf_counter()
    with progress_run(args.n, "phantoms", "patient", args.quiet, (ValueError, OSError)) as update:
        table = build_cohort(spec, n=args.n, seed=args.seed, out=args.out, pose=args.pose, progress=update,
                             workers=workers)
    print(f"wrote {len(table)} phantoms to {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("phantom", help="write a digital-human phantom cohort")
    p.add_argument("--n", type=int, required=True, help="number of patients")
    p.add_argument("--seed", type=int, default=0, help="random seed (population sampling, anatomy, noise)")
    p.add_argument("--out", required=True, help="output cohort directory")
    p.add_argument("--population", default=str(DEFAULT_POPULATION), help="population spec YAML")
    p.add_argument("--pose", choices=("supine", "standing"), default="supine")
    p.add_argument("--workers", type=int, default=1,
                   help="processes building phantoms (0: one per core); the cohort is the same for any number")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
