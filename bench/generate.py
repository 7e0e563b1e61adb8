"""Benchmark: seconds per generated patient at the default grid, peak memory, and the 1000-step
DDPM baseline in the same run. Prints JSON.

    python bench/generate.py [--checkpoint DIR] [--n 5] [--steps K] [--sampler ddim|dpm++] [--guidance G] [--device cpu|cuda]
                             [--threads 2] [--ddpm-n 1] [--no-ddpm] [--batch-size 1]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--sampler", default=None, help="ddim or dpm++ (default: the checkpoint's)")
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ddpm-n", type=int, default=1)
    ap.add_argument("--no-ddpm", action="store_true")
    ap.add_argument("--batch-size", type=int, default=1, help="patients sampled together (GPU throughput)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from vctcore.assets import default_population
    from vctcore.devices import describe_device
    from vctcore.generator import Generator
    from vctcore.population import PopulationSpec

    t0 = time.perf_counter()
    gen = Generator.from_pretrained(args.checkpoint, device=args.device)
    load_s = time.perf_counter() - t0
    table = PopulationSpec.from_yaml(default_population()).sample(args.n + 1, seed=0)
    gen.generate(table.iloc[:1], seed=99, steps=args.steps, guidance_scale=args.guidance, sampler=args.sampler)  # warm-up
    sync = torch.cuda.synchronize if gen.device.type == "cuda" else (lambda: None)
    sync()
    t = time.perf_counter()
    gen.generate(table.iloc[1:], seed=0, steps=args.steps, guidance_scale=args.guidance, sampler=args.sampler,
                 batch_size=args.batch_size)
    sync()
    per = (time.perf_counter() - t) / args.n
    out = {
        "benchmark": "generate", "checkpoint": str(gen.path), "device": str(gen.device),
        "device_name": describe_device(gen.device),
        "threads": args.threads, "grid_shape": list(gen.cfg.grid_shape), "latent_shape": list(gen.cfg.latent_shape),
        "steps": args.steps or gen.cfg.diffusion.sample_steps,
        "guidance": gen.cfg.diffusion.guidance_scale if args.guidance is None else args.guidance,
        "guidance_interval": gen.cfg.diffusion.guidance_interval,
        "sampler": args.sampler or gen.cfg.diffusion.sampler, "n": args.n, "batch_size": args.batch_size,
        "s_per_patient": round(per, 3), "target_s": 5.0, "load_s": round(load_s, 2),
        "peak_rss_mb": round(_peak_rss_mb(), 1), "target_rss_mb": 4096,
    }
    if gen.device.type == "cuda":
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if not args.no_ddpm:
        t = time.perf_counter()
        gen.generate(table.iloc[1:1 + args.ddpm_n], seed=0, sampler="ddpm", guidance_scale=args.guidance)
        sync()
        out["ddpm_baseline"] = {"steps": gen.cfg.diffusion.train_timesteps, "n": args.ddpm_n,
                                "s_per_patient": round((time.perf_counter() - t) / args.ddpm_n, 2)}
        out["speedup_vs_ddpm"] = round(out["ddpm_baseline"]["s_per_patient"] / per, 1)
    out["cpu_count"] = os.cpu_count()
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
