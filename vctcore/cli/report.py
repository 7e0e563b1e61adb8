"""``vct report``: the PDF bias report of a finished trial.

    vct report TRIAL_DIR --out report.pdf [--quiet]

Reads only the trial directory (and the generator's model card it names); computes no new numbers.
An existing output file is replaced atomically. Exit codes: 0 written; 2 bad input (a directory that
is not a finished trial, an output path that cannot be written), one line on stderr.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from vctcore.cli.common import progress_run


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write the PDF bias report of a finished trial",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trial_dir", metavar="TRIAL_DIR", help="a trial directory written by vct trial")
    p.add_argument("--out", required=True, help="the PDF to write (replaced if it exists)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vctcore.report import ReportError, write_report

    with progress_run(0, "report", "part", args.quiet, (ReportError,)) as update:
        out = write_report(Path(args.trial_dir), Path(args.out), progress=update)
    print(f"report written: {out}")
    return 0
