"""``vct phantom``: write a digital-human phantom cohort."""
from __future__ import annotations

import argparse
import time

from vctcore.cli.common import (DEFAULT_POPULATION, CLIError, add_executor_args, executor_spec, load_population,
                                progress_run)


def run(args: argparse.Namespace) -> int:
    from vctcore.executors import make_executor
    from vctcore.phantom.cohort import build_cohort

    spec = load_population(args.population)
    if args.n < 1:
        raise CLIError(f"--n must be at least 1, got {args.n}")
    ex_spec = executor_spec(args)
    start = time.perf_counter()
    with progress_run(args.n, "phantoms", "patient", args.quiet, (ValueError, OSError)) as update, \
            make_executor(ex_spec) as executor:
        table = build_cohort(spec, n=args.n, seed=args.seed, out=args.out, pose=args.pose, progress=update,
                             executor=executor)
    print(f"wrote {len(table)} phantoms to {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("phantom", help="write a digital-human phantom cohort")
    p.add_argument("--n", type=int, required=True, help="number of patients")
    p.add_argument("--seed", type=int, default=0, help="random seed (population sampling, anatomy, noise)")
    p.add_argument("--out", required=True, help="output cohort directory")
    p.add_argument("--population", default=str(DEFAULT_POPULATION), help="population spec YAML")
    p.add_argument("--pose", choices=("supine", "standing"), default="supine")
    add_executor_args(p, 1, "processes (local) or Ray actors building phantoms (0: one per core or slot); the "
                            "cohort is the same for any number")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
