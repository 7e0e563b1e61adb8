"""``vct phantom``: write a digital-human phantom cohort."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from vctcore.cli.common import DEFAULT_POPULATION, CLIError, progress_bar


def run(args: argparse.Namespace) -> int:
    from vctcore.phantom.cohort import build_cohort
    from vctcore.population import PopulationSpec

    spec_path = Path(args.population)
    if not spec_path.exists():
        raise CLIError(f"population spec {spec_path} does not exist")
    try:
        spec = PopulationSpec.from_yaml(spec_path)
    except ValueError as err:
        raise CLIError(f"population spec {spec_path}: {err}") from None
    if args.n < 1:
        raise CLIError(f"--n must be at least 1, got {args.n}")
    start = time.perf_counter()
    update, close = progress_bar(args.n, "phantoms", "patient", args.quiet)
    try:
        table = build_cohort(spec, n=args.n, seed=args.seed, out=args.out, pose=args.pose, progress=update)
    except (ValueError, OSError) as err:
        raise CLIError(str(err)) from None
    finally:
        close()
    print(f"wrote {len(table)} phantoms to {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("phantom", help="write a digital-human phantom cohort")
    p.add_argument("--n", type=int, required=True, help="number of patients")
    p.add_argument("--seed", type=int, default=0, help="random seed (population sampling, anatomy, noise)")
    p.add_argument("--out", required=True, help="output cohort directory")
    p.add_argument("--population", default=str(DEFAULT_POPULATION), help="population spec YAML")
    p.add_argument("--pose", choices=("supine", "standing"), default="supine")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
