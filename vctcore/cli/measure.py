"""``vct measure``: body measurements of one CT, or of every patient of a cohort.

    vct measure CT [--seg SEG.nii.gz] [--seg-format auto|fine|merged|totalsegmentator]
                [--backend auto|labels|threshold|totalsegmentator] [--json] [--force]
    vct measure --cohort DIR [--backend ...] [--workers N] [--executor local|ray] [--ray-address ADDR]
                [--no-resume] [--quiet] [--force]

CT: a NIfTI file, a folder holding one DICOM CT series, or a .zip of one series. Refusals (bad file,
not CT, implausible spacing, mixed series...) are one line on stderr and exit code 2; nothing is written.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vctcore.cli.common import CLIError, add_executor_args, executor_spec, progress_run

BACKEND_CHOICES = ("auto", "labels", "threshold", "totalsegmentator")
SEG_FORMATS = ("auto", "fine", "merged", "totalsegmentator")


def _one(args: argparse.Namespace) -> int:
    from vctcore.ct_input import read_ct_input
    from vctcore.dicom import DicomError
    from vctcore.measure import MeasureError, measure
    from vctcore.volume import NiftiError, read_labels

    try:
        ct = read_ct_input(args.ct)
        seg = read_labels(args.seg, like=ct) if args.seg else None
    except (NiftiError, DicomError) as err:
        raise CLIError(str(err)) from None
    if args.backend == "labels" and seg is None:
        raise CLIError("--backend labels needs --seg SEG.nii.gz")
    try:
        m = measure(ct, seg, args.backend, seg_format=args.seg_format, height=not args.no_height, force=args.force)
    except MeasureError as err:  # measure() calls the image "CT"; the user knows it by its path
        raise CLIError(f"{args.ct}: {str(err).removeprefix('CT: ')}") from None
    print(m.to_json() if args.json else m.table())
    return 0


def _cohort(args: argparse.Namespace) -> int:
    root = Path(args.cohort)
    if not root.is_dir():
        raise CLIError(f"cohort directory {root} does not exist")
    ex_spec = executor_spec(args)

    from vctcore.executors import make_executor
    from vctcore.measure.cohort import CSV_NAME, measure_cohort

    start = time.perf_counter()
    with progress_run(0, "measure", "patient", args.quiet, (ValueError, OSError)) as update, \
            make_executor(ex_spec) as executor:
        table = measure_cohort(root, backend=args.backend, resume=not args.no_resume, height=not args.no_height,
                               progress=update, force=args.force, executor=executor)
    failed = table[table["error"].astype(str) != ""] if "error" in table else table.iloc[:0]
    print(f"measured {len(table) - len(failed)} of {len(table)} patients in {time.perf_counter() - start:.1f} s; "
          f"wrote {root / CSV_NAME}")
    for _, row in failed.iterrows():
        print(f"  {row['id']}: {row['error']}", file=sys.stderr)
    return 1 if len(failed) else 0


def run(args: argparse.Namespace) -> int:
    if args.cohort and args.ct:
        raise CLIError("give either a CT file or --cohort DIR, not both")
    if args.cohort:
        if args.seg:
            raise CLIError("--seg is for a single CT; a cohort uses each patient's labels.nii.gz or seg.nii.gz")
        return _cohort(args)
    if not args.ct:
        raise CLIError("give a CT file (vct measure CT.nii.gz), a DICOM series folder or a .zip of one, "
                       "or --cohort DIR")
    return _one(args)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("measure", help="measure body mass, composition, bone density and coverage of CT scans",
                       description="Measure a CT (Appendix B): mass, BFP, MMP, body volume, height, bone density, "
                                   "L3 tissue areas; whole-body quantities only for whole-body scans.")
    p.add_argument("ct", nargs="?", help="CT in HU: a NIfTI file, a folder holding one DICOM CT series, or a .zip "
                                         "of one series")
    p.add_argument("--seg", help="segmentation NIfTI on the CT's grid (fine, merged 16-class or TotalSegmentator)")
    p.add_argument("--seg-format", choices=SEG_FORMATS, default="auto",
                   help="label vocabulary of --seg (auto: identified from its values and HU)")
    p.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                   help="segmentation backend (auto: labels when --seg is given, else threshold)")
    p.add_argument("--json", action="store_true", help="print the full record as JSON")
    p.add_argument("--cohort", help="measure every patient of this cohort directory; writes measurements.csv")
    add_executor_args(p, 1, "--cohort: processes (local) or Ray actors measuring patients (0: one per core or "
                            "slot)")
    p.add_argument("--no-resume", action="store_true", help="--cohort: measure every patient again")
    p.add_argument("--no-height", action="store_true", help="skip the height measurement")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true",
                   help="measure an image that does not look like CT in HU (no air background near -1000 HU or "
                        "no soft tissue near 0-60 HU, e.g. a CT cropped inside the body); its numbers are "
                        "meaningless unless it is CT in HU. A voxel spacing outside 0.1-20 mm is refused even so")
    p.set_defaults(func=run)
