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
                       budget_minutes=args.budget_minutes, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                       val_patients=args.val_patients)
    except (ValueError, FileNotFoundError, CheckpointError) as err:
        raise CLIError(str(err)) from None
    for r in report.results:
        state = "done" if r.finished else "paused"
        print(f"{r.stage}: {state} at step {r.step}/{r.total} ({r.seconds / 60:.1f} min in total)")
    for line in report.budget_lines:
        print(line)
    for stage, h in report.held_out.items():
        if "after" in h:
            print(f"{stage}: held-out {h['figure']} {h['before']:.4f} -> {h['after']:.4f}")
    if report.generator_dir is not None:
        dropped = " (metrics of the replaced networks dropped: run vct evaluate-generator)" if report.held_out else ""
        print(f"generator written to {report.generator_dir}{dropped}")
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


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """Run options: time budget, patient limit, progress and CPU threads."""
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
    p.add_argument("--preset", default=None,
                   help="preset name (cpu, paper) or YAML path (default: cpu; from a generator directory, its config)")
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
    p.add_argument("--stages", default=None,
                   help="comma-separated subset of stages to run; with --from-run GENERATOR_DIR, the generator's "
                        "stages to train on (diffusion, seg_decoder): more steps, or another cohort on its grid")
    p.add_argument("--steps", type=int, default=None, help="training on: steps to add (default: the preset's)")
    p.add_argument("--batch-size", type=int, default=None, help="training on: batch size (default: the preset's)")
    p.add_argument("--lr", type=float, default=None,
                   help="training on: peak learning rate, cosine decay to 10%% (default: the preset's)")
    p.add_argument("--val-patients", type=int, default=None,
                   help="training on: the first N patients held out for the loss or Dice check (default 8)")
    p.add_argument("--budget-minutes", type=float, default=None,
                   help="wall-time budget of the whole run in minutes, replacing the preset's (cpu: 172); each stage "
                        "times its first steps and is shortened if the run would not fit; 0: no budget")
    _add_run_options(p)
    p.set_defaults(func=run)
