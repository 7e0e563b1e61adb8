"""Session 10 (GPU): continue training the shipped default's diffusion U-Net on fresh phantoms.

Phantoms are built in worker processes and encoded on the device with the default's frozen
autoencoders as they arrive; the diffusion (starting from the shipped EMA weights and latent
statistics) then trains with the diffusion stage's loss (v-prediction, condition dropout, EMA 0.995)
for a wall-time budget, with a cosine learning rate over that budget. A held-out set of latents with
fixed noise and timesteps gives a validation loss before and after.

    python s10_diff_ft.py CKPT OUT --n 400 --val 40 --phantom-seconds 150 --train-seconds 240
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def _build(task):
    from vctcore.phantom.builder import build_phantom
    attrs, seed = task
    try:
        ph = build_phantom(attrs, seed=seed)
    except ValueError:
        return None
    return attrs, ph.ct.data.astype(np.float32), ph.seg.data.astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--val", type=int, default=40)
    ap.add_argument("--seed", type=int, default=41)
    ap.add_argument("--workers", type=int, default=15)
    ap.add_argument("--phantom-seconds", type=float, default=150)
    ap.add_argument("--train-seconds", type=float, default=240)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--lr-min", type=float, default=1e-5)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()

    from vctcore.cli.common import DEFAULT_POPULATION
    from vctcore.generator import Generator
    from vctcore.models.checkpoint import save_module
    from vctcore.models.conditioning import attribute_bins, drop_conditions
    from vctcore.models.encode import encode_patient
    from vctcore.phantom.builder import REQUIRED, check_attributes
    from vctcore.population import PopulationSpec
    from vctcore.train.export import _store_half
    import pandas as pd

    dev = torch.device(args.device)
    # the workers are forked before CUDA is initialised in this process
    pool = mp.get_context("fork").Pool(args.workers)
    gen = Generator.from_pretrained(args.checkpoint, device=args.device, post=False)
    cfg = gen.cfg.diffusion
    spec = PopulationSpec.from_yaml(DEFAULT_POPULATION)
    rows = spec.sample(3 * args.n, seed=args.seed)
    seeds = np.random.SeedSequence(args.seed).spawn(len(rows))
    tasks = []
    for i, (_, row) in enumerate(rows.iterrows()):
        attrs = {k: row[k] for k in REQUIRED}
        try:
            check_attributes(attrs)
        except ValueError:
            continue
        tasks.append((attrs, int(seeds[i].generate_state(1)[0])))

    zs, table = [], []
    with pool:
        for res in pool.imap(_build, tasks, chunksize=1):
            if res is not None:
                attrs, ct, seg = res
                x = torch.from_numpy(ct)[None, None].to(dev)
                s = torch.from_numpy(seg.astype(np.int64))[None].to(dev)
                zs.append(encode_patient(gen.ae, gen.seg_ae, x, s, gen.cfg)[0].float())
                table.append(attrs)
            if len(zs) >= args.n or time.monotonic() - t0 > args.phantom_seconds:
                pool.terminate()
                break
    t_data = time.monotonic() - t0
    z_all = torch.stack(zs)
    table = pd.DataFrame(table)
    table.to_csv(out / "ft_attributes.csv", index=False)
    bins_all = torch.from_numpy(attribute_bins(table, cfg.condition_on))
    n_val = min(args.val, len(zs) // 5)
    z_tr, b_tr, z_va, b_va = z_all[n_val:], bins_all[n_val:], z_all[:n_val], bins_all[:n_val]
    print(json.dumps({"patients": len(zs), "val": n_val, "data_seconds": round(t_data, 1)}), flush=True)

    dm = copy.deepcopy(gen.dm).float().train()
    for p in dm.parameters():
        p.requires_grad_(True)
    ema = copy.deepcopy(dm).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    sched = dm.train_scheduler()
    g = torch.Generator(device="cpu").manual_seed(args.seed)
    # four fixed (noise, timestep) draws per held-out latent, timesteps spread over the whole schedule
    z_va, b_va = z_va.repeat(4, 1, 1, 1, 1), b_va.repeat(4, 1)
    n_val = len(z_va)
    va_noise = torch.randn(z_va.shape, generator=g).to(dev)
    va_t = torch.randperm(n_val, generator=g).mul(cfg.train_timesteps).div(n_val).long().to(dev)
    amp = dict(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")

    @torch.no_grad()
    def val_loss(model) -> float:
        model.eval()
        tot = 0.0
        for i in range(0, n_val, 16):
            z0 = model.normalise(z_va[i:i + 16])
            nz, t = va_noise[i:i + 16], va_t[i:i + 16]
            zt = sched.add_noise(z0, nz, t)
            tgt = sched.get_velocity(z0, nz, t) if cfg.prediction_type == "v_prediction" else nz
            with torch.autocast(**amp):
                pred = model(zt, t, b_va[i:i + 16].to(dev))
            tot += float(F.mse_loss(pred.float(), tgt, reduction="sum"))
        model.train()
        return tot / z_va.numel()

    before = val_loss(ema)
    opt = torch.optim.AdamW(dm.parameters(), lr=args.lr, weight_decay=0.0)
    rng = np.random.default_rng(args.seed)
    log = open(out / "ft_log.csv", "w", newline="")
    w = csv.writer(log)
    w.writerow(["step", "seconds", "loss", "lr"])
    step, acc, t_start = 0, [], time.monotonic()
    while True:
        el = time.monotonic() - t_start
        if el > args.train_seconds:
            break
        lr = args.lr_min + 0.5 * (args.lr - args.lr_min) * (1 + math.cos(math.pi * el / args.train_seconds))
        for pg in opt.param_groups:
            pg["lr"] = lr
        idx = torch.from_numpy(rng.integers(len(z_tr), size=args.batch))
        z0 = dm.normalise(z_tr[idx.to(z_tr.device)])
        bins = drop_conditions(b_tr[idx], cfg.condition_dropout, cfg.attribute_dropout, g).to(dev)
        noise = torch.randn(z0.shape, generator=g).to(dev)
        t = torch.randint(0, cfg.train_timesteps, (z0.shape[0],), generator=g).to(dev)
        zt = sched.add_noise(z0, noise, t)
        target = sched.get_velocity(z0, noise, t) if cfg.prediction_type == "v_prediction" else noise
        with torch.autocast(**amp):
            pred = dm(zt, t, bins)
            loss = F.mse_loss(pred.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(dm.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), dm.parameters()):
                pe.lerp_(pm, 1 - 0.995)
        step += 1
        acc.append(loss.item())
        if step % 50 == 0:
            w.writerow([step, round(time.monotonic() - t_start, 2), round(float(np.mean(acc)), 5), f"{lr:.3g}"])
            log.flush()
            acc = []
    log.close()
    train_s = time.monotonic() - t_start
    after_ema, after_raw = val_loss(ema), val_loss(dm)
    tmp = Path("/tmp/ft_diffusion.safetensors")
    save_module(ema, tmp, kind="diffusion", config=gen.cfg.to_dict())
    _store_half(tmp, out / "diffusion.safetensors")
    print(json.dumps({"steps": step, "batch": args.batch, "train_seconds": round(train_s, 1),
                      "s_per_step": round(train_s / max(step, 1), 4), "val_loss_before": round(before, 5),
                      "val_loss_after_ema": round(after_ema, 5), "val_loss_after_raw": round(after_raw, 5),
                      "total_seconds": round(time.monotonic() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
