"""``vct generate``: sample a population and write a synthetic cohort with the generator."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vctcore.cli.common import (DEFAULT_POPULATION, CLIError, add_executor_args, executor_spec, load_population,
                                progress_run)
from vctcore.models.config import SAMPLERS


def run(args: argparse.Namespace) -> int:
    from vctcore.assets import default_generator

    if args.n < 1:
        raise CLIError(f"--n must be at least 1, got {args.n}")
    spec = load_population(args.population)
    try:
        table = spec.sample(args.n, seed=args.seed)
    except ValueError as err:
        raise CLIError(f"population spec {args.population}: {err}") from None
    root = Path(args.checkpoint) if args.checkpoint is not None else default_generator()
    if not root.is_dir():  # Generator.from_pretrained's refusal, before torch is imported, so it comes at once
        raise CLIError(f"{root}: generator checkpoint directory does not exist")
    ex_spec = executor_spec(args)

    from vctcore.executors import ExecutorError, make_executor
    from vctcore.generator import Generator
    from vctcore.models.checkpoint import CheckpointError
    from vctcore.synthetic_cohort import generate_cohort

    try:
        # on a Ray cluster the workers load it on their own devices; the driver reads it on its CPU
        gen = Generator.from_pretrained(args.checkpoint, device="cpu" if ex_spec.kind == "ray" else args.device)
    except (CheckpointError, ValueError) as err:
        raise CLIError(str(err)) from None
    for msg in gen.support_warnings(table):
        print(f"vct generate: warning: outside the training support: {msg}", file=sys.stderr)
    start = time.perf_counter()
    bar = progress_run(args.n, "patients", "patient", args.quiet, (OSError,), context=f"writing {args.out}: ")
    with bar as update, make_executor(ex_spec) as executor:
        try:
            generate_cohort(gen, table, seed=args.seed, out=args.out, steps=args.steps, guidance_scale=args.guidance,
                            sampler=args.sampler, provenance={"population": spec.to_dict()}, progress=update,
                            executor=executor, device=args.device, composition=not args.no_composition)
        except ExecutorError as err:
            raise CLIError(str(err)) from None
    print(f"wrote {args.n} synthetic patients to {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate a synthetic CT cohort from a population spec")
    p.add_argument("--population", default=str(DEFAULT_POPULATION), help="population spec YAML")
    p.add_argument("--n", type=int, required=True, help="number of patients")
    p.add_argument("--seed", type=int, default=0, help="seed (population sampling and generation)")
    p.add_argument("--out", required=True, help="output cohort directory (rerun to resume)")
    p.add_argument("--checkpoint", default=None, help="generator directory (default: checkpoints/default)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the checkpoint's)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale")
    p.add_argument("--sampler", default=None, choices=SAMPLERS,
                   help="ddim, dpm++ (DPM-Solver++(2M)) or ddpm (1000 steps); default: the checkpoint's")
    p.add_argument("--no-composition", action="store_true",
                   help="sample from the attribute bins alone, not steered toward each row's body fat, muscle and "
                        "weight (only generators with a composition guide steer)")
    add_executor_args(p, 1, "processes (local; each loads the generator) or Ray actors (one per GPU, else per CPU "
                            "slot) making patients; 0: one per core or slot; the cohort is the same for any number")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
