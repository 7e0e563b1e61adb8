"""Continue training a finished generator's segmentation decoder, its encoder and codebook frozen.

The diffusion samples segmentation latents from the frozen encoder's codebook, so only the decoder
may move (as in the preset's ``seg_decoder`` stage); ``seg_ae.safetensors`` is the one file that changes.
The shipped default's decoder was trained on this way (its model card and ``provenance/``).

A continuation directory ``RUN`` holds ``continue.json``, ``cache/`` (the cohort's arrays, read through
:func:`vctcore.train.data.load_cohort`; the labels are the training targets, so it stays until the run is
done), ``latents/`` (the segmentation latents Z_seg of the cohort, encoded whole with the frozen encoder as the
``latents`` stage encodes them; resumable),
``state/`` and ``logs/seg_decoder.csv`` (the stage loop's, resumable), and, when done, the new generator.

Each step decodes a batch of latent slabs (all of X and Y, ``slab`` latent slices of Z; 0: whole
volumes) and takes the stage's Dice + CE loss against the labels under them, with a 100-step warm-up
and a cosine decay to 10 % of ``lr``. The first ``val_patients`` patients are held out: their Dice
(mean of the 16 organ classes, whole latents decoded in the generator's windows) is recorded before
and after in the new manifest's ``training.continuations``.
"""
from __future__ import annotations

import copy
import shutil
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from vctcore.models.autoencoders import one_hot
from vctcore.models.config import StageSchedule
from vctcore.train.continuation import (RUN_KEYS, ContinuationReport, check_run, cohort_arrays, cohort_table,
                                       continuation_record, export_continuation, held_out_before, run_meta)
from vctcore.train.latents import encode_cohort, latents_done, load_latents
from vctcore.train.loop import Progress, run_loop


def continue_seg_decoder(checkpoint: str | Path, cohort: str | Path, run_dir: str | Path, *, steps: int,
                         batch_size: int = 4, lr: float = 2e-4, slab: int = 0, seed: int = 0, val_patients: int = 8,
                         device: str = "auto", max_minutes: float | None = None, limit: int | None = None,
                         progress: Progress | None = None, checkpoint_every: int = 100) -> ContinuationReport:
    """Train ``checkpoint``'s segmentation decoder ``steps`` more steps on ``cohort`` (same grid); resumable.

    When done, writes ``run_dir/generator``: the base checkpoint with the new ``seg_ae.safetensors``, a
    manifest whose ``training.continuations`` records this run, and a model card without the fidelity
    and reconstruction figures (the generated segmentations, and the post-processor's input, changed).
    """
    from vctcore.devices import autocast, describe_device
    from vctcore.evaluate.overlap import cohort_dice, dice_per_class
    from vctcore.generator import DECODE_ROI, Generator
    from vctcore.models.losses import segmentation_loss
    from vctcore.models.windowed import windowed

    if steps < 1 or batch_size < 1 or lr <= 0 or val_patients < 1 or slab < 0:
        raise ValueError(f"steps, batch size and val patients must be at least 1, lr positive and slab at least 0 "
                         f"(got {steps}, {batch_size}, {val_patients}, {lr}, {slab})")
    checkpoint, cohort, run_dir = Path(checkpoint), Path(cohort), Path(run_dir)
    deadline = time.monotonic() + 60 * max_minutes if max_minutes is not None else None
    gen = Generator.from_pretrained(checkpoint, device=device, post=False)
    table = cohort_table(cohort, limit)
    if len(table) <= val_patients:
        raise ValueError(f"{cohort} has {len(table)} patients: too few to hold out {val_patients} and train on the rest")
    ids = [str(i) for i in table["id"]]
    meta = run_meta(checkpoint, gen, cohort, ids, seed=seed, val_patients=val_patients, steps=steps,
                    batch_size=batch_size, lr=lr, slab=slab, latents="segmentation")
    check_run(run_dir, meta, ids, (*RUN_KEYS, "slab", "latents"))
    make_report = partial(ContinuationReport, "seg_decoder", "held-out Dice")
    data = cohort_arrays(gen, cohort, run_dir, len(ids), progress)  # the labels are the targets: cache kept
    if latents_done(run_dir) < len(ids):
        done, _ = encode_cohort(None, gen.seg_ae, gen.cfg, data, run_dir, gen.device, progress=progress,
                                deadline=deadline)
        if done < len(ids):
            return make_report(0, steps, 0.0, None, None, None, done, len(ids))
    z_all, labels = load_latents(run_dir), data.seg  # (N, C_seg, x, y, z) latents; (N, X, Y, Z) classes
    dev = gen.device
    lz = z_all.shape[-1]
    cz = lz if slab == 0 else min(slab, lz)
    scale = labels.shape[-1] // lz

    def amp():
        return autocast(dev, gen.cfg.precision)

    seg_ae = gen.seg_ae.float()
    decoder = copy.deepcopy(seg_ae.vq.decoder).float().train()
    for p in decoder.parameters():
        p.requires_grad_(True)

    @torch.no_grad()
    def val_dice(model: torch.nn.Module) -> float:
        model.eval()
        per = []
        for i in range(val_patients):
            with amp():
                logits = windowed(lambda z: model(seg_ae.unpack(z)), torch.from_numpy(np.array(z_all[i:i + 1])).to(dev),
                                  DECODE_ROI).float()
            per.append(dice_per_class(np.asarray(labels[i]), logits[0].argmax(0).to(torch.uint8).cpu().numpy()))
        model.train()
        return float(cohort_dice(per)["mean"])

    before = held_out_before(run_dir, "val_dice", lambda: val_dice(decoder))

    sch = StageSchedule(steps=steps, batch_size=batch_size, lr=lr, checkpoint_every=checkpoint_every, lr_schedule="cosine")
    opt = torch.optim.AdamW(decoder.parameters(), lr=lr)
    crit = segmentation_loss()
    rng = np.random.default_rng(seed * 1000 + 50)

    def step(i: int) -> dict[str, float]:
        idx = np.sort(rng.integers(val_patients, len(ids), size=batch_size))
        z0 = int(rng.integers(0, lz - cz + 1))
        z = torch.from_numpy(np.array(z_all[idx, ..., z0:z0 + cz])).to(dev)
        y = one_hot(torch.from_numpy(np.array(labels[idx, ..., z0 * scale:(z0 + cz) * scale])).to(dev))
        with amp():
            loss = crit(decoder(seg_ae.unpack(z)).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item(), "lr": opt.param_groups[0]["lr"]}

    result = run_loop("seg_decoder", run_dir, {"decoder": decoder}, {"decoder": opt}, sch, step,
                      rng_state=lambda: {"numpy": rng.bit_generator.state},
                      set_rng_state=lambda s: setattr(rng.bit_generator, "state", s["numpy"]),
                      deadline=deadline, progress=progress)
    if not result.finished:
        return make_report(result.step, steps, result.seconds, before, None, None, len(ids), len(ids))
    after = val_dice(decoder)
    tuned = copy.deepcopy(seg_ae).cpu()
    tuned.vq.decoder.load_state_dict(decoder.state_dict())
    record = continuation_record("seg_decoder", meta, result.seconds, describe_device(dev), "vct continue-seg-decoder",
                                 run_dir, slab=cz, val_dice_before=round(before, 4), val_dice_after=round(after, 4),
                                 base_seg_ae_sha256=gen.checkpoint_sha256.get("seg_ae.safetensors"))
    # the generated segmentations changed, and so did the post-processor's input (the class probabilities)
    out = export_continuation(checkpoint, run_dir, tuned, "seg_ae.safetensors", "seg_ae", gen.cfg.to_dict(), record,
                              half=False, drop_metrics=("fidelity.", "reconstruction."))
    del data, labels
    shutil.rmtree(run_dir / "cache", ignore_errors=True)
    return make_report(result.step, steps, result.seconds, before, after, out, len(ids), len(ids))
