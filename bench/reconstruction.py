"""Autoencoder reconstruction on held-out patients (issue targets: PSNR >= 30 dB over HU [-1000, 1000],
SSIM >= 0.93, segmentation Dice >= 0.95). Prints JSON.

    python bench/reconstruction.py --checkpoint DIR --cohort HELD_OUT_COHORT [--n 10] [--no-post] [--model-card]

``--model-card`` also writes the figures into the checkpoint's metrics.json and model_card.md.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--cohort", required=True)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-post", action="store_true", help="decode without the post-processing U-Net")
    ap.add_argument("--model-card", action="store_true", help="record the figures in the checkpoint's model card")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from vctcore.cohort import read_first_patients
    from vctcore.fidelity.recon import psnr_hu, reconstruct, ssim_hu
    from vctcore.generator import Generator
    from vctcore.overlap import cohort_dice, dice_per_class

    gen = Generator.from_pretrained(args.checkpoint, device="cpu", post=not args.no_post)
    try:
        table, cts, segs = read_first_patients(args.cohort, args.n, gen.cfg.grid_shape)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    ids = list(table["id"])
    psnr, ssim, dice = [], [], []
    t = time.perf_counter()
    for ct, seg, (_, attrs) in zip(cts, segs, table.iterrows()):
        rct, rseg = reconstruct(gen, ct, seg, attrs.to_dict())
        psnr.append(psnr_hu(ct.data, rct.data))
        ssim.append(ssim_hu(ct.data, rct.data))
        dice.append(dice_per_class(seg.data, rseg.data))
    d = cohort_dice(dice)
    result = {
        "benchmark": "reconstruction", "checkpoint": str(gen.path), "cohort": args.cohort, "n": len(ids),
        "post_processing": gen.post is not None,
        "psnr_db_mean": round(float(np.mean(psnr)), 3), "psnr_db_min": round(float(np.min(psnr)), 3),
        "ssim_mean": round(float(np.mean(ssim)), 4), "ssim_min": round(float(np.min(ssim)), 4),
        "seg_dice_mean": round(float(d["mean"]), 4),
        "seg_dice_per_class": {k: round(v, 4) for k, v in d["per_class"].items()},
        "targets": {"psnr_db": 30.0, "ssim": 0.93, "seg_dice": 0.95},
        "paper": {"psnr_db": 31.06, "ssim": 0.947},
        "seconds_per_patient": round((time.perf_counter() - t) / len(ids), 2),
    }
    if args.model_card:
        from vctcore.train.model_card import update_model_card

        where = f"n={len(ids)} held-out patients of {args.cohort}, post-processing {'on' if gen.post else 'off'}"
        update_model_card(gen.path, {
            "reconstruction.psnr_db": {"value": result["psnr_db_mean"], "target": ">= 30",
                                       "definition": f"image AE PSNR over HU [-1000, 1000], mean (min {result['psnr_db_min']}); {where}"},
            "reconstruction.ssim": {"value": result["ssim_mean"], "target": ">= 0.93",
                                    "definition": f"image AE SSIM, mean (min {result['ssim_min']}); {where}"},
            "reconstruction.seg_dice": {"value": result["seg_dice_mean"], "target": ">= 0.95",
                                        "definition": f"segmentation AE Dice, mean of 16 classes; {where}"},
        })
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
