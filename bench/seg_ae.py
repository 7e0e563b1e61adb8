"""Held-out reconstruction Dice of a training run's segmentation autoencoder (issue target: >= 0.95, mean of
the 16 organ classes), before any generator exists: the finished stage's weights (the ``seg_decoder`` stage's
when the run has them), or the ``seg_ae`` stage's resumable state while it still trains; also how far apart
its used codes lie in the diffusion's units (bench/diagnostics/codebook.py), the decoded maps' connected
components, and with --noise the Dice and components when the latent misses its codes by that many SDs.
Prints JSON.

    python bench/seg_ae.py --run RUN --cohort HELD_OUT_COHORT [--n 8] [--device cpu] [--noise 0.05,0.1,0.2]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="a vct train run directory")
    ap.add_argument("--cohort", required=True, help="held-out cohort on the run's grid")
    ap.add_argument("--n", type=int, default=8, help="first N patients of the cohort")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--noise", default="",
                    help="comma-separated latent noise levels in the diffusion's units (per-channel SDs), e.g. "
                         "0.05,0.1,0.2: Dice and fragments when a sample misses the codes by that much")
    ap.add_argument("--min-island-ml", type=float, default=None,
                    help="also score the maps with stray islands under this many mL relabelled, as generation "
                         "decodes (default: the run config's seg_min_island_ml; 0: off)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from diagnostics.codebook import used_code_spacing
    from diagnostics.seg_recon import segmentation_reconstruction_dice
    from vctcore.cohort import read_first_patients
    from vctcore.devices import resolve_device
    from vctcore.label_islands import min_island_voxels
    from vctcore.models.autoencoders import SegAE
    from vctcore.models.checkpoint import load_module, load_state
    from vctcore.models.config import GeneratorConfig
    from vctcore.train.stages import tuned_seg_ae_file

    run = Path(args.run)
    cfg = GeneratorConfig.from_dict(json.loads((run / "run.json").read_text())["config"])
    seg_ae = SegAE(cfg.seg_ae)
    weights, state_step = tuned_seg_ae_file(run / "models"), None
    if weights.exists():
        load_module(seg_ae, weights, kind="seg_ae")
    else:
        weights = run / "state" / "seg_ae.pt"
        if not weights.exists():
            raise SystemExit(f"{run}: no segmentation AE yet (neither models/seg_ae.safetensors nor state/seg_ae.pt)")
        state = load_state(weights)
        seg_ae.load_state_dict(state["modules"]["seg_ae"])
        state_step = int(state["step"])
    device = resolve_device(args.device)
    seg_ae.to(device)
    try:
        table, _, maps = read_first_patients(args.cohort, args.n, cfg.grid_shape, ct=False)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    ids, labels = list(table["id"]), (m.data for m in maps)  # read one at a time
    t = time.perf_counter()
    latents: list = []
    levels = [float(v) for v in args.noise.split(",") if v.strip()]
    island_ml = cfg.seg_min_island_ml if args.min_island_ml is None else args.min_island_ml
    d = segmentation_reconstruction_dice(seg_ae, labels, device, cfg.precision, latents, noise_sds=levels, seed=0,
                                         min_island_voxels=min_island_voxels(island_ml, cfg.spacing_mm))
    seconds = time.perf_counter() - t
    noise = {k: {"seg_dice_mean": round(float(v["mean"]), 4), "fragments": v["fragments"]}
             for k, v in d["latent_noise"].items()}
    return {
        "benchmark": "seg_ae", "run": str(run), "weights": str(weights), "state_step": state_step,
        "seg_ae": cfg.to_dict()["seg_ae"], "cohort": args.cohort, "n": len(ids),
        "seg_dice_mean": round(float(d["mean"]), 4),
        "seg_dice_per_class": {k: round(v, 4) for k, v in d["per_class"].items()},
        # one encoding and, per patient, one decoding for each noise level besides the plain one
        "target": 0.95, "seconds_per_patient": round(seconds / len(ids), 2), "decodes_per_patient": 1 + len(levels),
        # connected components of the decoded and true maps, per patient (speckle shows as many more)
        "fragments": d["fragments"], "fragments_truth": d["fragments_truth"],
        # Dice and fragments when the packed latent is perturbed by that many SDs before snapping
        "latent_noise": noise,
        # the plain reconstruction with stray islands relabelled, as generation decodes (None when off)
        "min_island_ml": island_ml,
        "cleaned": None if "cleaned" not in d else {
            "seg_dice_mean": round(float(d["cleaned"]["mean"]), 4), "fragments": d["cleaned"]["fragments"],
            "seg_dice_per_class": {k: round(v, 4) for k, v in d["cleaned"]["per_class"].items()}},
        # how precisely the diffusion must land on a code (bench/diagnostics/codebook.py)
        "codebook": {k: None if v is None else round(v, 4) for k, v in used_code_spacing(latents).items()},
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
