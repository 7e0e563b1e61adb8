"""Session 14 (CPU): fine-tune the default's post-processor on the new segmentation decoder's class
probabilities, with the post stage's own step (vctcore.train.stages.train_post): autoencoder
reconstructions of training patches (image latent noised as configured), multi-window L1 with
post.window_weights, the attributes dropped as the diffusion's conditions are. Starts from the
shipped post-processor's weights; cosine learning rate from --lr to 10 % of it.

    python post_ft.py GEN OUT --cohort workspace/cohorts/train43 --cache workspace/runs/budget-cpu/cache --steps 600
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("generator")
    ap.add_argument("out")
    ap.add_argument("--cohort", required=True)
    ap.add_argument("--cache", required=True, help="the cohort's training cache (ct.npy, seg.npy on the grid)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args()
    torch.set_num_threads(2)
    from vctcore.cohort import read_attributes
    from vctcore.devices import autocast
    from vctcore.generator import Generator
    from vctcore.models.autoencoders import hu_to_unit, one_hot
    from vctcore.models.checkpoint import save_module
    from vctcore.models.conditioning import attribute_bins, drop_conditions
    from vctcore.models.losses import multi_window_l1
    from vctcore.models.postprocess import bins_one_hot, post_input
    from vctcore.train.data import CohortArrays, PatchSampler
    from vctcore.train.stages import _noisy_latent

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gen = Generator.from_pretrained(args.generator, device="cpu")
    cfg, dev = gen.cfg, gen.device
    pcfg, dcfg = cfg.post, cfg.diffusion
    ae, seg_ae, post = gen.ae.float().eval(), gen.seg_ae.float().eval(), gen.post.float().train()
    for p in post.parameters():
        p.requires_grad_(True)
    cache = Path(args.cache)
    meta = json.loads((cache / "cache.json").read_text())
    table = read_attributes(args.cohort).iloc[: meta["n"]].reset_index(drop=True)
    data = CohortArrays(np.load(cache / "ct.npy", mmap_mode="r"), np.load(cache / "seg.npy", mmap_mode="r"), table,
                        tuple(meta["spacing_mm"]), str(args.cohort))
    sampler = PatchSampler(data, (64, 64, 64), seed=args.seed)
    window_cfg = replace(cfg.image_ae, mw_weights=pcfg.window_weights)
    bins_all = attribute_bins(table, pcfg.condition_on)
    g = torch.Generator().manual_seed(args.seed)
    opt = torch.optim.AdamW(post.parameters(), lr=args.lr)
    log = open(out / "post_ft_log.csv", "w", newline="")
    w = csv.writer(log)
    w.writerow(["step", "seconds", "loss", "l1", "l1_before", "lr"])
    t0, acc = time.monotonic(), []
    for i in range(args.steps):
        lr = args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * i / args.steps)))
        for pg in opt.param_groups:
            pg["lr"] = lr
        ct_hu, seg, idx = sampler.batch_with_index(args.batch)
        bins = drop_conditions(torch.from_numpy(bins_all[idx]), dcfg.condition_dropout, dcfg.attribute_dropout, g)
        conds = bins_one_hot(pcfg.condition_on, bins.numpy())
        x = hu_to_unit(ct_hu, cfg.image_ae.hu_clip)
        with torch.no_grad(), autocast(dev, cfg.precision):
            recon = ae.decode(_noisy_latent(ae.encode(x), pcfg.latent_noise, g)).float()
            logits = seg_ae.decode(seg_ae.encode(one_hot(seg))).float()
            inp = post_input(pcfg, recon, logits, conds)
        with autocast(dev, cfg.precision):
            y = post(inp).float()
            loss = multi_window_l1(y, x, ct_hu, window_cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        acc.append((loss.item(), F.l1_loss(y, x).item(), F.l1_loss(recon, x).item()))
        if (i + 1) % 25 == 0:
            m = np.mean(acc, axis=0)
            w.writerow([i + 1, round(time.monotonic() - t0, 1), *(round(float(v), 5) for v in m), f"{lr:.3g}"])
            log.flush()
            print(f"step {i + 1}/{args.steps} {time.monotonic() - t0:.0f}s loss {m[0]:.5f}", flush=True)
            acc = []
    log.close()
    save_module(post.eval(), out / "post.safetensors", kind="post", config=cfg.to_dict())
    (out / "post_ft_result.json").write_text(json.dumps({"steps": args.steps, "batch": args.batch, "lr": args.lr,
                                                         "seconds": round(time.monotonic() - t0, 1),
                                                         "patients": len(table), "seed": args.seed}))


if __name__ == "__main__":
    main()
