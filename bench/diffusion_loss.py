"""Held-out denoising loss of a generator's diffusion per timestep, image and segmentation channels apart
(bench/diagnostics/denoising.py): a quick check of a newly trained diffusion (say, on a finer segmentation
latent) before the full fidelity suite, or of a run's diffusion while it still trains (``--run``: its EMA
weights). Prints JSON.

    python bench/diffusion_loss.py (--checkpoint DIR | --run RUN) --cohort HELD_OUT_COHORT [--n 8]
        [--timesteps 50,200,500,900] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import time


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=None, help="generator directory (default: the shipped one)")
    ap.add_argument("--run", default=None, help="a vct train run directory instead of a generator")
    ap.add_argument("--cohort", required=True, help="held-out cohort on the generator's grid")
    ap.add_argument("--n", type=int, default=8, help="first N patients of the cohort")
    ap.add_argument("--timesteps", default="50,200,500,900")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from diagnostics.denoising import held_out_denoising_loss
    from diagnostics.run_modules import load_run_modules
    from vctcore.cohort import read_first_patients
    from vctcore.devices import resolve_device
    from vctcore.generator import Generator

    if args.run and args.checkpoint:
        raise SystemExit("give --checkpoint or --run, not both")
    step = None
    if args.run:
        try:
            gen, step = load_run_modules(args.run, resolve_device(args.device))
        except ValueError as err:
            raise SystemExit(str(err)) from None
        source = str(args.run)
    else:
        gen = Generator.from_pretrained(args.checkpoint, device=args.device, post=False)
        source = str(gen.path)
    try:
        table, cts, segs = read_first_patients(args.cohort, args.n, gen.cfg.grid_shape)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    ids = list(table["id"])
    t = time.perf_counter()
    loss = held_out_denoising_loss(gen, [c.data for c in cts], [s.data for s in segs], table,
                                   [int(v) for v in args.timesteps.split(",")], args.seed)
    return {"benchmark": "diffusion_loss", "source": source, "diffusion_state_step": step,
            "cohort": args.cohort, "n": len(ids),
            "seed": args.seed, "latent_channels": gen.cfg.latent_channels,
            "image_channels": gen.cfg.image_ae.levels[-1].embedding_dim,
            "loss": {k: {g: round(v, 4) for g, v in d.items()} for k, d in loss.items()},
            "seconds": round(time.perf_counter() - t, 1)}


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
