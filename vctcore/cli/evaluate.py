"""``vct evaluate-generator`` (the generator fidelity suite) and ``vct train-segmenter`` (the independent
segmenter it uses). Both register from this module."""
from __future__ import annotations

import argparse
import sys
import time

from vctcore.cli.common import CLIError, loss_printer
from vctcore.models.config import SAMPLERS

STAGE_NAMES = {"generate": "generating", "real": "real patients", "synthetic": "synthetic patients",
               "plots": "plots"}


class _StageBars:
    """One tqdm bar per stage of ``evaluate_generator``'s progress callback."""

    def __init__(self, quiet: bool) -> None:
        self.quiet, self.stage, self.bar = quiet, None, None

    def __call__(self, done: int, total: int, message: str = "") -> None:
        from tqdm import tqdm

        from vctcore.progress import split_stage

        stage, _ = split_stage(message)
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=total, desc=STAGE_NAMES.get(stage, stage), file=sys.stderr, disable=self.quiet)
        self.bar.total, self.bar.n = total, done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _sex_classifier_path(arg: str):
    from vctcore.checkers.sex_classifier import DEFAULT_SEX_CLASSIFIER

    return {"none": None, "default": DEFAULT_SEX_CLASSIFIER}.get(arg, arg)


def run_train_sex_classifier(args: argparse.Namespace) -> int:
    import torch

    from vctcore.checkers.sex_classifier import SexTrainConfig, train_sex_classifier

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.steps < 1:
        raise CLIError(f"--steps must be at least 1, got {args.steps}")
    try:
        clf = train_sex_classifier(args.cohort, args.out, val=args.val, limit=args.limit,
                                   progress=loss_printer(args.quiet, 10.0),
                                   train=SexTrainConfig(steps=args.steps, seed=args.seed))
    except (ValueError, FileNotFoundError) as err:
        raise CLIError(str(err)) from None
    t = clf.manifest["training"]
    print(f"sex classifier written to {args.out}: train accuracy {t['train_accuracy']:.3f} on {t['n_patients']} "
          f"patients in {t['seconds']:.0f} s")
    if "validation" in clf.manifest:
        v = clf.manifest["validation"]
        print(f"validation accuracy {v['accuracy']:.3f} on {v['n_patients']} patients of {v['cohort']}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from vctcore.fidelity import EvaluationError, evaluate_generator
    from vctcore.models.checkpoint import CheckpointError

    if args.n < 1:
        raise CLIError(f"--n must be at least 1, got {args.n}")
    bars = _StageBars(args.quiet)
    start = time.perf_counter()
    try:
        report = evaluate_generator(args.checkpoint, args.real, args.out, n=args.n, seed=args.seed, device=args.device,
                                    steps=args.steps, guidance_scale=args.guidance, sampler=args.sampler,
                                    segmenter=args.segmenter,
                                    segmenter_path=args.segmenter_path,
                                    recon_n=None if args.recon_n < 0 else args.recon_n,
                                    slices_per_plane=args.slices, progress=bars,
                                    sex_classifier=_sex_classifier_path(args.sex_classifier),
                                    composition=not args.no_composition)
    except (EvaluationError, CheckpointError, FileNotFoundError, ValueError) as err:
        raise CLIError(str(err)) from None
    finally:
        bars.close()
    for name, ok in report["passed"].items():
        m = report["metrics"][name]
        value = "n/a" if m["value"] is None else f"{m['value']:.3f}"
        print(f"{'PASS' if ok else 'FAIL'}  {name:<24} {value:>8}  (target {m['comparison']} {m['target']:g}, "
              f"paper {m['paper']})")
    print(f"wrote {args.out}/fidelity.json in {time.perf_counter() - start:.0f} s")
    if args.model_card:
        from vctcore.fidelity.summary import fidelity_card_metrics
        from vctcore.train.model_card import update_model_card

        card = update_model_card(report["checkpoint"]["path"], fidelity_card_metrics(report))
        print(f"headline figures written to {card}")
    return 0


def run_train_segmenter(args: argparse.Namespace) -> int:
    channels = _int_list(args.channels, "--channels must be positive integers, e.g. 16,32,64,128")
    from vctcore.checkers.segmenter import SegmenterConfig  # torch and MONAI: after the argument checks
    from vctcore.checkers.segmenter_train import SegTrainConfig, train_segmenter
    from vctcore.models.checkpoint import CheckpointError

    progress = loss_printer(args.quiet, args.log_seconds)
    cfg = SegmenterConfig(channels=channels)
    train = SegTrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                           patch_z=args.patch_z or None, batch_dice=args.batch_dice, init=args.init)
    try:
        res = train_segmenter(args.cohort, args.out, run=args.run, cfg=cfg, train=train, max_minutes=args.max_minutes,
                              limit=args.limit, threads=args.threads, progress=progress)
    except (ValueError, FileNotFoundError, CheckpointError) as err:
        raise CLIError(str(err)) from None
    return _report_segmenter("segmenter", res, args)


def run_train_segmenter_refiner(args: argparse.Namespace) -> int:
    patch = _int_list(args.patch, "--patch must be three sizes of at least 8 voxels, e.g. 64,64,64", minimum=8, count=3)
    channels = _int_list(args.channels, "--channels must be positive integers, e.g. 8,16,32,64")
    from vctcore.checkers.segmenter import refiner_config  # torch and MONAI: after the argument checks
    from vctcore.checkers.segmenter_refine import RefineTrainConfig, train_refiner
    from vctcore.models.checkpoint import CheckpointError

    progress = loss_printer(args.quiet, args.log_seconds)
    cfg = refiner_config(channels=channels)
    train = RefineTrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, patch=patch, seed=args.seed)
    try:
        res = train_refiner(args.cohort, args.segmenter, args.out, run=args.run, cfg=cfg, train=train,
                            max_minutes=args.max_minutes, limit=args.limit, threads=args.threads, progress=progress)
    except (ValueError, FileNotFoundError, CheckpointError) as err:
        raise CLIError(str(err)) from None
    return _report_segmenter("refiner", res, args)


def _int_list(text: str, what: str, minimum: int = 1, count: int | None = None) -> tuple[int, ...]:
    """Comma-separated integers, each at least ``minimum`` (``count`` of them when given); CLIError
    ``what`` and the text otherwise."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < minimum or (count is not None and len(values) != count):
        raise CLIError(f"{what}; got {text!r}")
    return values


def _report_segmenter(what: str, res, args: argparse.Namespace) -> int:
    """Print where a (refiner) training stopped and, with ``--holdout``, the held-out Dice (also written
    to the manifest)."""
    from vctcore.checkers.segmenter import load_unet
    from vctcore.checkers.segmenter_train import holdout_dice

    state = "done" if res.finished else "paused"
    print(f"{what}: {state} at step {res.step}/{res.total} ({res.seconds / 60:.1f} min in total); "
          f"written to {res.out}")
    if args.holdout:
        dice = holdout_dice(load_unet(res.out), args.holdout, n=args.holdout_n)
        print(f"held-out Dice ({dice['n']} patients of {args.holdout}): {dice['mean']:.3f}")
        for name, v in dice["per_class"].items():
            print(f"  {name:<24} {v:.3f}")
        _record_holdout(res.out, dice)
    if not res.finished:
        print("rerun the same command to continue")
    return 0


def _record_holdout(out, dice: dict) -> None:
    """Add the held-out Dice to the segmenter's manifest (the weights' sha256 is unchanged)."""
    import json
    from pathlib import Path

    path = Path(out) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["holdout_dice"] = dice
    path.write_text(json.dumps(manifest, indent=2, default=str))


def _segmenter_schedule_args(p: argparse.ArgumentParser, *, run_dir: str, steps: int) -> None:
    """Run directory and schedule options that train-segmenter and train-segmenter-refiner share (defaults differ)."""
    p.add_argument("--run", default=None, help=f"state, cache and logs (default: OUT/{run_dir})")
    p.add_argument("--steps", type=int, default=steps, help="total steps")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--lr", type=float, default=2e-3)


def _segmenter_run_args(p: argparse.ArgumentParser) -> None:
    """Options that train-segmenter and train-segmenter-refiner share: time budget, data, threads, hold-out, output."""
    p.add_argument("--max-minutes", type=float, default=None, help="stop (resumably) after this wall time")
    p.add_argument("--limit", type=int, default=None, help="use only the first N patients")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--holdout", default=None, help="cohort whose first patients give the held-out Dice")
    p.add_argument("--holdout-n", type=int, default=4)
    p.add_argument("--log-seconds", type=float, default=30.0)
    p.add_argument("--quiet", action="store_true")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate-generator", help="fidelity suite: synthetic vs matched real patients",
                       description="Generate one synthetic patient per real row (same attributes), segment and "
                                   "measure both, and write OUT/fidelity.json, OUT/patients.csv and OUT/plots/.")
    p.add_argument("--checkpoint", default=None, help="generator directory (default: checkpoints/default)")
    p.add_argument("--real", required=True, help="real cohort directory (attributes.csv + patients/)")
    p.add_argument("--n", type=int, default=100, help="evaluate the first N real patients")
    p.add_argument("--out", required=True, help="output directory (rerun to resume)")
    p.add_argument("--seed", type=int, default=0, help="generation seed")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the checkpoint's)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale")
    p.add_argument("--sampler", default=None, choices=SAMPLERS, help="default: the checkpoint's")
    p.add_argument("--no-composition", action="store_true",
                   help="sample from the attribute bins alone (a generator with a composition guide otherwise steers "
                        "each synthetic patient toward its real row's BFP, MMP and weight)")
    p.add_argument("--segmenter", default="auto", choices=("auto", "unet", "totalsegmentator"),
                   help="independent segmenter: auto = TotalSegmentator when its weights are installed "
                        "(slow on CPU), else the U-Net")
    p.add_argument("--segmenter-path", default=None, help="U-Net segmenter directory (default: checkpoints/segmenter)")
    p.add_argument("--sex-classifier", default="default",
                   help="image sex classifier directory that decides the sex check (default: the shipped "
                        "checkpoints/sex_classifier); none: the segmentation rule decides")
    p.add_argument("--recon-n", type=int, default=40,
                   help="reconstruct (encode + decode) the first N real patients; -1: all, 0: none")
    p.add_argument("--slices", type=int, default=12, help="slices per plane and image for the realism distance")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--model-card", action="store_true",
                   help="write the headline figures into the checkpoint's metrics.json and model_card.md")
    p.set_defaults(func=run_evaluate)

    t = sub.add_parser("train-segmenter", help="train or resume the independent segmenter (3D U-Net)")
    t.add_argument("--cohort", required=True, help="training cohort (ct.nii.gz + seg.nii.gz per patient)")
    t.add_argument("--out", required=True, help="model directory (segmenter.safetensors + manifest.json)")
    _segmenter_schedule_args(t, run_dir="run", steps=3000)
    t.add_argument("--patch-z", type=int, default=64, help="slices per training crop on the segmenter grid (0: whole)")
    t.add_argument("--channels", default="16,32,64,128", help="channels per U-Net level")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--init", default=None, help="segmenter directory whose weights a new run starts from (fine-tune)")
    t.add_argument("--batch-dice", action=argparse.BooleanOptionalAction, default=True,
                   help="pool the Dice term over the batch per class (helps organs of a few voxels)")
    _segmenter_run_args(t)
    t.set_defaults(func=run_train_segmenter)

    r = sub.add_parser("train-segmenter-refiner", help="add a full-resolution refiner to a trained segmenter",
                       description="Train the second stage of a cascade segmenter: a small U-Net on the 6 x 6 x 8 mm "
                                   "grid that reads the CT and the frozen coarse segmenter's class probabilities. "
                                   "OUT gets the coarse weights unchanged plus refiner.safetensors. Rerun to resume.")
    r.add_argument("--cohort", required=True, help="training cohort (ct.nii.gz + seg.nii.gz per patient)")
    r.add_argument("--segmenter", required=True, help="the trained coarse segmenter directory")
    r.add_argument("--out", required=True, help="the cascade's directory (must differ from --segmenter)")
    _segmenter_schedule_args(r, run_dir="run-refiner", steps=2000)
    r.add_argument("--patch", default="64,64,64", help="crop size X,Y,Z in voxels of the refiner grid")
    r.add_argument("--channels", default="8,16,32,64", help="channels per refiner U-Net level")
    r.add_argument("--seed", type=int, default=0)
    _segmenter_run_args(r)
    r.set_defaults(func=run_train_segmenter_refiner)

    c = sub.add_parser("train-sex-classifier", help="train the image sex classifier of the fidelity suite",
                       description="Train a small 3D ResNet that reads a whole CT and calls its sex, on real "
                                   "CT only; the fidelity suite's sex check uses it. A few minutes on 2 cores.")
    c.add_argument("--cohort", required=True, help="real cohort directory (attributes.csv with sex + patients/)")
    c.add_argument("--out", required=True, help="model directory (sex_classifier.safetensors + manifest.json)")
    c.add_argument("--val", default=None, help="held-out real cohort: its accuracy goes into the manifest")
    c.add_argument("--steps", type=int, default=400, help="training steps (batches of 4 volumes)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--limit", type=int, default=None, help="use only the first N patients")
    c.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all cores)")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=run_train_sex_classifier)
