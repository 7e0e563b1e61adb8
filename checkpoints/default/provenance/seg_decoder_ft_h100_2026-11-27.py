"""Session 14 (GPU): fine-tune the shipped default's segmentation decoder on fresh phantoms.

The encoder and codebook stay frozen, so the diffusion's latents stay valid (as in the preset's
``seg_decoder`` stage). Phantoms are built in worker processes; each one's segmentation is encoded on
the device with the frozen encoder exactly as at inference (whole volume, ``encode_patient``'s window).
The decoder then trains on whole-width latent slabs (all of X and Y, ``--crop-z`` latent slices of Z)
with the stage's Dice + CE loss for a wall-time budget, cosine learning rate over that budget. Dice
(mean of the 16 organ classes, ``vctcore.evaluate.overlap``) on held-out phantoms before and after,
decoding whole latents as the generator does.

    python seg_decoder_ft.py CKPT OUT --n 320 --val 16 --phantom-seconds 100 --train-seconds 220
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


def _build(task):
    from vctcore.phantom.builder import build_phantom
    attrs, seed = task
    try:
        ph = build_phantom(attrs, seed=seed)
    except ValueError:
        return None
    return attrs, ph.seg.data.astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=320)
    ap.add_argument("--val", type=int, default=16)
    ap.add_argument("--seed", type=int, default=44)
    ap.add_argument("--workers", type=int, default=15)
    ap.add_argument("--phantom-seconds", type=float, default=100)
    ap.add_argument("--train-seconds", type=float, default=220)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--crop-z", type=int, default=34, help="latent slices per training slab (0: whole)")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--lr-min", type=float, default=1e-5)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--init", default=None, help="seg AE weights (same encoder) to start the decoder from")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()

    from vctcore.cli.common import DEFAULT_POPULATION
    from vctcore.evaluate.overlap import cohort_dice, dice_per_class
    from vctcore.generator import Generator
    from vctcore.models.autoencoders import one_hot
    from vctcore.models.checkpoint import save_module
    from vctcore.models.encode import ENCODE_ROI
    from vctcore.models.losses import segmentation_loss
    from vctcore.models.windowed import windowed
    from vctcore.phantom.builder import REQUIRED, check_attributes
    from vctcore.population import PopulationSpec
    import pandas as pd

    dev = torch.device(args.device)
    pool = mp.get_context("fork").Pool(args.workers)  # forked before CUDA starts in this process
    gen = Generator.from_pretrained(args.checkpoint, device=args.device, post=False)
    seg_ae = gen.seg_ae.float().eval()
    if args.init:
        from vctcore.models.checkpoint import load_module
        start = copy.deepcopy(seg_ae).cpu()
        load_module(start, args.init, kind="seg_ae")
        enc = {k: v for k, v in start.state_dict().items() if not k.startswith("vq.decoder.")}
        assert all(torch.equal(v.cpu(), seg_ae.state_dict()[k].cpu()) for k, v in enc.items()), "encoder differs"
        seg_ae.load_state_dict(start.state_dict())
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

    zs, labs, table = [], [], []
    with pool:
        for res in pool.imap(_build, tasks, chunksize=1):
            if res is not None:
                attrs, seg = res
                s = torch.from_numpy(seg).to(dev)
                with torch.no_grad():
                    zs.append(windowed(seg_ae.encode, one_hot(s[None]), ENCODE_ROI)[0].float())
                labs.append(s)
                table.append(attrs)
            if len(zs) >= args.n or time.monotonic() - t0 > args.phantom_seconds:
                pool.terminate()
                break
    t_data = time.monotonic() - t0
    pd.DataFrame(table).to_csv(out / "ft_attributes.csv", index=False)
    n_val = min(args.val, len(zs) // 5)
    z_all, y_all = torch.stack(zs), torch.stack(labs)  # (N, C, x, y, z) latents; (N, X, Y, Z) uint8 classes
    z_tr, y_tr, z_va, y_va = z_all[n_val:], y_all[n_val:], z_all[:n_val], y_all[:n_val]
    scale = y_all.shape[-1] // z_all.shape[-1]
    print(json.dumps({"patients": len(zs), "val": n_val, "data_seconds": round(t_data, 1),
                      "latent": list(z_all.shape[1:]), "labels": list(y_all.shape[1:])}), flush=True)

    decoder = copy.deepcopy(seg_ae.vq.decoder).float()

    @torch.no_grad()
    def val_dice(dec, n: int | None = None) -> dict:
        dec.eval()
        per = []
        for i in range(n_val if n is None else min(n, n_val)):
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                logits = dec(z_va[i:i + 1]).float()
            per.append(dice_per_class(y_va[i].cpu().numpy(), logits[0].argmax(0).to(torch.uint8).cpu().numpy()))
        dec.train()
        return cohort_dice(per)

    before = val_dice(decoder)
    print(json.dumps({"dice_before": round(float(before["mean"]), 4)}), flush=True)
    for p in decoder.parameters():
        p.requires_grad_(True)
    decoder.train()
    opt = torch.optim.AdamW(decoder.parameters(), lr=args.lr)
    crit = segmentation_loss()
    rng = np.random.default_rng(args.seed)
    amp = dict(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")
    lz = z_all.shape[-1]
    cz = lz if args.crop_z <= 0 else min(args.crop_z, lz)
    log = open(out / "ft_log.csv", "w", newline="")
    w = csv.writer(log)
    w.writerow(["step", "seconds", "loss", "lr", "val_dice4"])
    step, acc, t_start, next_val = 0, [], time.monotonic(), 30.0
    while True:
        el = time.monotonic() - t_start
        if el > args.train_seconds:
            break
        lr = args.lr_min + 0.5 * (args.lr - args.lr_min) * (1 + math.cos(math.pi * el / args.train_seconds))
        for pg in opt.param_groups:
            pg["lr"] = lr
        idx = torch.from_numpy(rng.integers(len(z_tr), size=args.batch)).to(dev)
        z0 = int(rng.integers(0, lz - cz + 1))
        z = z_tr[idx][..., z0:z0 + cz]
        y = one_hot(y_tr[idx][..., z0 * scale:(z0 + cz) * scale])
        with torch.autocast(**amp):
            loss = crit(decoder(z).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        acc.append(loss.item())
        if step % 25 == 0:
            vd = ""
            if time.monotonic() - t_start > next_val:
                vd = round(float(val_dice(decoder, 4)["mean"]), 4)
                next_val += 30.0
            w.writerow([step, round(time.monotonic() - t_start, 2), round(float(np.mean(acc)), 5), f"{lr:.3g}", vd])
            log.flush()
            acc = []
    log.close()
    train_s = time.monotonic() - t_start
    after = val_dice(decoder)
    tuned = copy.deepcopy(seg_ae).float().cpu()
    tuned.vq.decoder.load_state_dict(decoder.state_dict())
    save_module(tuned, out / "seg_ae_ft.safetensors", kind="seg_ae", config=gen.cfg.to_dict())
    res = {"steps": step, "batch": args.batch, "crop_z": cz, "train_seconds": round(train_s, 1),
           "s_per_step": round(train_s / max(step, 1), 4), "lr": [args.lr, args.lr_min],
           "dice_before": round(float(before["mean"]), 4), "dice_after": round(float(after["mean"]), 4),
           "per_class_before": {k: round(v, 4) for k, v in before["per_class"].items()},
           "per_class_after": {k: round(v, 4) for k, v in after["per_class"].items()},
           "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
           "total_seconds": round(time.monotonic() - t0, 1)}
    (out / "ft_result.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
