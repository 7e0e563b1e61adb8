"""``vct train-downstream``, ``vct export-downstream`` and ``vct predict``: the models under test of a trial
(:mod:`vctcore.downstream`). All three register from this module."""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from vctcore.cli.common import CLIError, loss_printer, progress_run

#: regression targets a reference model can be trained on
TARGETS = ("bfp_pct", "mmp_pct")


def read_ids_file(path: str | Path) -> tuple[list[str], np.ndarray | None]:
    """(ids, y or None) from a text file with one patient id per line (blank lines and ``#`` comments
    skipped) or a CSV with an ``id`` column and optionally ``y``; CLIError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CLIError(f"--ids {path}: file does not exist")
    try:
        lines = [ln.strip() for ln in path.read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as err:
        raise CLIError(f"--ids {path}: unreadable ({type(err).__name__})") from None
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise CLIError(f"--ids {path}: no patient ids in the file")
    y = None
    if "," in lines[0]:
        table = pd.read_csv(path, dtype={"id": str}, comment="#")
        if "id" not in table.columns:
            raise CLIError(f"--ids {path}: a CSV needs an 'id' column, found {', '.join(map(str, table.columns))}")
        ids = [str(i).strip() for i in table["id"]]
        if "y" in table.columns:
            y = pd.to_numeric(table["y"], errors="coerce").to_numpy(np.float64)
            bad = [ids[i] for i in np.flatnonzero(~np.isfinite(y))]
            if bad:
                raise CLIError(f"--ids {path}: column y is missing or not a number for id(s) {', '.join(bad[:5])}")
    else:
        ids = lines[1:] if lines[0] == "id" else lines
    dup = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dup:
        raise CLIError(f"--ids {path}: duplicate id(s) {', '.join(dup[:5])}")
    return ids, y


def target_values(cohort: Path, ids: list[str], target: str) -> tuple[np.ndarray, Path]:
    """Ground truth of ``ids`` from ``cohort/measurements.csv`` when it has the ``target`` column, else from
    ``cohort/attributes.csv``; (values, the file read). CLIError for unknown ids or missing values."""
    measured = cohort / "measurements.csv"
    source = measured if measured.is_file() and target in pd.read_csv(measured, nrows=0).columns else \
        cohort / "attributes.csv"
    if not source.is_file():
        raise CLIError(f"{cohort}: neither measurements.csv nor attributes.csv; give y in the --ids CSV")
    table = pd.read_csv(source, dtype={"id": str})
    if target not in table.columns:
        raise CLIError(f"{source}: no column {target}; give y in the --ids CSV")
    values = table.drop_duplicates("id").set_index("id")[target].reindex(ids)
    missing = [i for i, v in zip(ids, pd.to_numeric(values, errors="coerce")) if not np.isfinite(v)]
    if missing:
        raise CLIError(f"{source}: no {target} for id(s) {', '.join(missing[:5])}"
                       f"{f' (+{len(missing) - 5} more)' if len(missing) > 5 else ''}")
    return values.to_numpy(np.float64), source


def run_train(args: argparse.Namespace) -> int:
    from vctcore.downstream.card import DownstreamError
    from vctcore.downstream.train import DEFAULT_EPOCHS, DEFAULT_LR, train_reference

    cohort = Path(args.cohort)
    epochs = DEFAULT_EPOCHS if args.epochs is None else args.epochs
    if args.target not in TARGETS:
        raise CLIError(f"--target must be one of {', '.join(TARGETS)}, got {args.target!r}")
    if not (cohort / "patients").is_dir():
        raise CLIError(f"--cohort {cohort}: not a cohort directory (no patients/ folder)")
    if epochs < 1:
        raise CLIError(f"--epochs must be at least 1, got {epochs}")
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise CLIError(f"--max-minutes must be positive, got {args.max_minutes}")
    ids, y = read_ids_file(args.ids)
    if y is None:
        y, source = target_values(cohort, ids, args.target)
        print(f"target {args.target} of {len(ids)} patients from {source}")
    else:
        print(f"target {args.target} of {len(ids)} patients from column y of {args.ids}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        out = train_reference(cohort, pd.DataFrame({"id": ids, "y": y}), target=args.target, out=args.out,
                              seed=args.seed, epochs=epochs, batch_size=args.batch_size,
                              lr=DEFAULT_LR if args.lr is None else args.lr,
                              max_minutes=args.max_minutes, progress=loss_printer(args.quiet, 10.0))
    except (DownstreamError, ValueError, FileNotFoundError) as err:
        raise CLIError(str(err)) from None
    from vctcore.downstream.card import load_card

    card = load_card(out)
    m, t = card.metrics, card.training_data
    print(f"model written to {out}: {t['epochs']} epochs in {m['wall_time_s']:.0f} s, training MAE "
          f"{m['train_mae']:.2f} {card.unit} (body-middle slices)")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from vctcore.downstream.card import DownstreamError
    from vctcore.downstream.export import export_onnx, export_torchscript

    if not args.onnx and not args.torchscript:
        raise CLIError("give --onnx OUTDIR and/or --torchscript OUTDIR")
    try:
        for out, export, what in ((args.onnx, export_onnx, "ONNX"), (args.torchscript, export_torchscript,
                                                                     "TorchScript")):
            if out:
                done = export(args.model_dir, out)
                print(f"{what} model written to {done} (checked against the torch model)")
    except (DownstreamError, ValueError, FileNotFoundError) as err:
        raise CLIError(str(err)) from None
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from vctcore.downstream.card import DownstreamError
    from vctcore.downstream.models import load_model, predict_cohort
    from vctcore.measure.cohort import patient_ids

    cohort = Path(args.cohort)
    try:
        model = load_model(args.model)
        ids = read_ids_file(args.ids)[0] if args.ids else patient_ids(cohort)
    except (DownstreamError, FileNotFoundError) as err:
        raise CLIError(str(err)) from None
    absent = [i for i in ids if not (cohort / "patients" / i / "ct.nii.gz").is_file()]
    if absent:
        raise CLIError(f"{cohort}: no CT for patient(s) {', '.join(absent[:5])}")
    with progress_run(len(ids), "predict", "patient", args.quiet, (DownstreamError, ValueError)) as update:
        table = predict_cohort(model, cohort, ids, progress=update)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
        print(f"{len(table)} predictions of {model.card.target} ({model.card.unit}) written to {args.out}")
    else:
        print(table.to_csv(index=False), end="")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add train-downstream, export-downstream and predict (once: COMMANDS lists each of them)."""
    if "train-downstream" in sub.choices:
        return
    p = sub.add_parser("train-downstream", help="train the reference downstream model (2.5D regressor)")
    p.add_argument("--cohort", required=True, help="cohort directory (patients/<id>/ct.nii.gz)")
    p.add_argument("--target", required=True, help=f"what to predict: {' or '.join(TARGETS)}")
    p.add_argument("--ids", required=True, help="training patients: one id per line, or a CSV with id (and y, the "
                   "ground truth; without it measurements.csv, else attributes.csv of the cohort)")
    p.add_argument("--out", required=True, help="model directory to write (model.safetensors, card.yaml)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 40: about 2-3 min for 200 patients on "
                   "2 idle CPU cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=None, help="base learning rate (default 3e-3; /10 at 50 %% and "
                   "90 %% of the epochs)")
    p.add_argument("--max-minutes", type=float, default=None, help="cap on the whole run; fewer epochs if needed")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run_train)

    e = sub.add_parser("export-downstream", help="export a reference downstream model to ONNX or TorchScript")
    e.add_argument("model_dir", help="reference model directory (card.yaml + model.safetensors)")
    e.add_argument("--onnx", help="output directory: gets model.onnx and card.yaml (format onnx)")
    e.add_argument("--torchscript", help="output directory: gets model.torchscript and card.yaml")
    e.set_defaults(func=run_export)

    r = sub.add_parser("predict", help="a downstream model's predictions for a cohort (CSV: id, y_pred)")
    r.add_argument("--model", required=True, help="model directory (card.yaml/card.json + weights)")
    r.add_argument("--cohort", required=True, help="cohort directory")
    r.add_argument("--ids", default=None, help="patients to predict (as for train-downstream; default: all)")
    r.add_argument("--out", default=None, help="CSV to write (default: stdout)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=run_predict)

