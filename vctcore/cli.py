"""``vct`` command line: a thin argparse layer over vctcore (phantom cohorts now; generate, measure,
train, trial and report as they land). Bad arguments end with a one-line message and exit code 2."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEFAULT_POPULATION = Path(__file__).resolve().parent.parent / "assets" / "populations" / "adult_reference.yaml"


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


def _cmd_phantom(args: argparse.Namespace) -> int:
    from tqdm import tqdm

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
    bar = tqdm(total=args.n, desc="phantoms", unit="patient", file=sys.stderr, disable=args.quiet)

    def progress(done: int, total: int, pid: str) -> None:
        bar.n = done
        bar.set_postfix_str(pid)
        bar.refresh()

    try:
        table = build_cohort(spec, n=args.n, seed=args.seed, out=args.out, pose=args.pose, progress=progress)
    except (ValueError, OSError) as err:
        raise CLIError(str(err)) from None
    finally:
        bar.close()
    print(f"wrote {len(table)} phantoms to {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vct", description="Virtual clinical trials for radiology AI")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("phantom", help="write a digital-human phantom cohort")
    p.add_argument("--n", type=int, required=True, help="number of patients")
    p.add_argument("--seed", type=int, default=0, help="random seed (population sampling, anatomy, noise)")
    p.add_argument("--out", required=True, help="output cohort directory")
    p.add_argument("--population", default=str(DEFAULT_POPULATION), help="population spec YAML")
    p.add_argument("--pose", choices=("supine", "standing"), default="supine")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_phantom)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CLIError as err:
        print(f"vct {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vct {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
