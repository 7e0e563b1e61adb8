"""``vct train``: train (or resume) the conditional generator on a cohort directory."""
from __future__ import annotations

import argparse
import sys
import time

from vctcore.cli.common import CLIError


def run(args: argparse.Namespace) -> int:
    from vctcore.models.checkpoint import CheckpointError
    from vctcore.train.run import train
    from vctcore.train.stages import STAGES

    _set_threads(args)
    stages = args.stages.split(",") if args.stages else None
    progress = _progress_printer(args)
    try:
        report = train(args.cohort, args.run, preset=args.preset, seed=args.seed, device=args.device,
                       stages=stages, max_minutes=args.max_minutes, limit=args.limit, progress=progress,
                       from_run=args.from_run, warm_start=tuple(filter(None, (args.warm_start or "").split(","))),
                       budget_minutes=args.budget_minutes)
    except (ValueError, FileNotFoundError, CheckpointError) as err:
        raise CLIError(str(err)) from None
    for r in report.results:
        state = "done" if r.finished else "paused"
        print(f"{r.stage}: {state} at step {r.step}/{r.total} ({r.seconds / 60:.1f} min in total)")
    for line in report.budget_lines:
        print(line)
    if report.generator_dir is not None:
        print(f"generator written to {report.generator_dir}")
    else:
        print(f"not finished; rerun the same command to continue ({', '.join(STAGES)})")
    return 0


def _progress_printer(args: argparse.Namespace):
    """A progress callback printing one line per stage change or every ``args.log_seconds`` to stderr."""
    start = time.monotonic()
    last = {"stage": None, "t": 0.0}

    def progress(stage: str, done: int, total: int, losses: dict) -> None:
        now = time.monotonic()
        if args.quiet or (stage == last["stage"] and done < total and now - last["t"] < args.log_seconds
                          and "budget_scale" not in losses):
            return
        last.update(stage=stage, t=now)
        parts = " ".join(f"{k}={v:.4g}" for k, v in losses.items())
        print(f"[{now - start:7.0f}s] {stage:<11} {done:>6}/{total:<6} {parts}", file=sys.stderr, flush=True)

    return progress


def run_continue(args: argparse.Namespace) -> int:
    from vctcore.train.continue_diffusion import continue_diffusion

    _set_threads(args)
    _print_continuation(_continuation(continue_diffusion, args, batch_size=args.batch_size, lr=args.lr))
    return 0


def run_continue_seg(args: argparse.Namespace) -> int:
    from vctcore.train.continue_seg_decoder import continue_seg_decoder

    _set_threads(args)
    _print_continuation(_continuation(continue_seg_decoder, args, batch_size=args.batch_size, lr=args.lr,
                                      slab=args.slab))
    return 0


def _continuation(fn, args: argparse.Namespace, **kwargs):
    """Run a continuation function with the options every continuation command takes."""
    from vctcore.models.checkpoint import CheckpointError

    try:
        return fn(args.checkpoint, args.cohort, args.run, steps=args.steps, seed=args.seed,
                  val_patients=args.val_patients, device=args.device, max_minutes=args.max_minutes, limit=args.limit,
                  progress=_progress_printer(args), **kwargs)
    except (ValueError, FileNotFoundError, CheckpointError) as err:
        raise CLIError(str(err)) from None


def _print_continuation(rep) -> None:
    """One line on where a continuation (a ``ContinuationReport``) stopped, or what it wrote."""
    if rep.encoded < rep.n_patients:
        print(f"latents: paused after encoding {rep.encoded}/{rep.n_patients} patients; "
              f"rerun the same command to continue")
    elif rep.generator_dir is None:
        print(f"{rep.stage}: paused at step {rep.step}/{rep.total} ({rep.seconds / 60:.1f} min in total); "
              f"rerun the same command to continue")
    else:
        print(f"{rep.stage}: done, {rep.total} steps ({rep.seconds / 60:.1f} min); {rep.figure} {rep.before:.4f} -> "
              f"{rep.after:.4f}")
        print(f"generator written to {rep.generator_dir} (its fidelity figures were dropped: run vct evaluate-generator)")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """Options both training commands take: time budget, patient limit, progress and CPU threads."""
    p.add_argument("--max-minutes", type=float, default=None, help="stop (resumably) after this wall time")
    p.add_argument("--limit", type=int, default=None, help="use only the first N patients")
    p.add_argument("--log-seconds", type=float, default=30.0, help="seconds between progress lines")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all cores)")
    p.add_argument("--quiet", action="store_true")


def _set_threads(args: argparse.Namespace) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train or resume the conditional CT generator")
    p.add_argument("--cohort", required=True, help="training cohort directory (phantom or real)")
    # --run-dir is the spelling to use under torchrun: torchrun's own parser (torch 2.11) reads "--run"
    # anywhere on its command line as an ambiguous abbreviation of its --run-path and stops
    p.add_argument("--run", "--run-dir", dest="run", required=True,
                   help="run directory (state, logs, models; resumable); spell it --run-dir under torchrun")
    p.add_argument("--preset", default="cpu", help="preset name (cpu, paper) or YAML path")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--from-run", default=None,
                   help="start this (new) run from the finished stages of an earlier run that this preset leaves "
                        "unchanged (e.g. keep the autoencoders, retrain a wider diffusion U-Net), or of a generator "
                        "directory such as checkpoints/default (on any cohort and seed)")
    p.add_argument("--warm-start", default=None,
                   help="with --from-run: comma-separated stages (diffusion) that, retrained because their config "
                        "changed (e.g. new conditioning attributes, a finer segmentation latent), start from the earlier "
                        "run's weights where they fit (the diffusion U-Net keeps the old weights of latent channels "
                        "that both runs' autoencoders share)")
    p.add_argument("--stages", default=None, help="comma-separated subset of stages to run")
    p.add_argument("--budget-minutes", type=float, default=None,
                   help="wall-time budget of the whole run in minutes, replacing the preset's (cpu: 172); each stage "
                        "times its first steps and is shortened if the run would not fit; 0: no budget")
    _add_run_options(p)
    p.set_defaults(func=run)

    c = sub.add_parser("continue-diffusion",
                       help="train a finished generator's diffusion U-Net further (more steps or another cohort)")
    _add_continuation_options(c, batch_size=16, lr=1e-4, val_patients=40, checked="loss", cache="latents")
    c.set_defaults(func=run_continue)

    s = sub.add_parser("continue-seg-decoder",
                       help="train a finished generator's segmentation decoder further (encoder and codebook frozen)")
    _add_continuation_options(s, batch_size=4, lr=2e-4, val_patients=8, checked="Dice", cache="cache, latents")
    s.add_argument("--slab", type=int, default=0,
                   help="latent slices of Z per training sample (0: whole volumes, as the generator decodes)")
    s.set_defaults(func=run_continue_seg)


def _add_continuation_options(p: argparse.ArgumentParser, *, batch_size: int, lr: float, val_patients: int,
                              checked: str, cache: str) -> None:
    """Options every continuation command takes, with its own defaults."""
    p.add_argument("--checkpoint", required=True, help="generator directory to continue from")
    p.add_argument("--cohort", required=True, help="cohort on the generator's grid (phantom or real)")
    p.add_argument("--run", required=True, help=f"continuation directory ({cache}, state, logs; resumable); "
                                                "the new generator is written to RUN/generator")
    p.add_argument("--steps", type=int, required=True, help="training steps to add")
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr, help="peak learning rate (cosine decay to 10%%)")
    p.add_argument("--val-patients", type=int, default=val_patients,
                   help=f"first N patients held out for the {checked} check")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    _add_run_options(p)
