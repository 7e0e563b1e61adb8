"""Continue training a finished generator's diffusion U-Net: more steps, or a new cohort on the same grid.

The autoencoders and post-processor stay frozen, so only ``diffusion.safetensors`` changes. Training
longer is the cheapest lever on a small preset (the shipped default's continuation: its model card and
checkpoints/default/notes.md).

A continuation directory ``RUN`` holds ``continue.json`` (the base checkpoint's sha256, cohort, seed,
schedule), ``latents/`` (the cohort encoded with the base autoencoders as the ``latents`` stage encodes
it, :mod:`vctcore.train.latents`; resumable; ``cache/`` holds the cohort's arrays until then), ``state/`` and
``logs/diffusion.csv`` (the stage loop's, resumable), and, when done, the new generator directory.

The U-Net starts from the base checkpoint's (EMA) weights and latent statistics; it trains with the
diffusion stage's loss (:func:`vctcore.train.diffusion_training.diffusion_loss`, condition dropout as configured), a
100-step warm-up and a cosine decay to 10 % of ``lr``, and keeps an EMA (decay 0.995) that becomes the
new weights. The first ``val_patients`` patients are held out: their loss with fixed noise and timesteps
(four draws each) is recorded before and after in the new manifest's ``training.continuations``.
"""
from __future__ import annotations

import copy
import shutil
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vctcore.models.conditioning import attribute_bins
from vctcore.models.config import StageSchedule
from vctcore.train.continuation import (ContinuationReport, check_run, cohort_arrays, cohort_table,
                                       continuation_record, export_continuation, held_out_before, run_meta)
from vctcore.train.latents import encode_cohort, latents_done, load_latents
from vctcore.train.loop import Progress, run_loop

#: draws of (noise, timestep) per held-out patient in the validation loss
VAL_DRAWS = 4


def _cohort_latents(gen, cohort: Path, run_dir: Path, n: int, progress: Progress | None,
                    deadline: float | None) -> np.ndarray | None:
    """(n, C, *latent) float32 latents of the cohort's first ``n`` patients with ``gen``'s autoencoders,
    resumable; None when ``deadline`` (``time.monotonic()``) passed before all were encoded.

    The cohort is read through the training stages' cache (:func:`vctcore.train.data.load_cohort`,
    in ``run_dir/cache``, removed once every patient is encoded) and encoded as the ``latents`` stage
    does (:func:`vctcore.train.latents.encode_cohort`).
    """
    if latents_done(run_dir) < n:
        data = cohort_arrays(gen, cohort, run_dir, n, progress)
        done, _ = encode_cohort(gen.ae, gen.seg_ae, gen.cfg, data, run_dir, gen.device, progress=progress,
                                deadline=deadline)
        del data
        if done < n:
            return None  # the cache stays for the rerun
        shutil.rmtree(run_dir / "cache", ignore_errors=True)
    return load_latents(run_dir)


def _merged_support(old: dict, table: pd.DataFrame, names: tuple[str, ...]) -> dict:
    """The base generator's training support widened by the continuation cohort's attributes."""
    from vctcore.train.export import attribute_support

    out = copy.deepcopy(old)
    for name, sup in attribute_support(table, names).items():
        if name not in out:
            out[name] = sup
        elif "categories" in sup:
            out[name]["categories"] = sorted(set(out[name].get("categories", [])) | set(sup["categories"]))
        else:
            out[name] = {"min": min(out[name]["min"], sup["min"]), "max": max(out[name]["max"], sup["max"])}
    return out


def continue_diffusion(checkpoint: str | Path, cohort: str | Path, run_dir: str | Path, *, steps: int,
                       batch_size: int = 16, lr: float = 1e-4, seed: int = 0, val_patients: int = 40,
                       device: str = "auto", max_minutes: float | None = None, limit: int | None = None,
                       progress: Progress | None = None, checkpoint_every: int = 100) -> ContinuationReport:
    """Train ``checkpoint``'s diffusion for ``steps`` more steps on ``cohort`` (same grid); resumable.

    When done, writes ``run_dir/generator``: the base checkpoint with the new diffusion weights, a
    manifest whose ``training.continuations`` records this run, and a model card whose fidelity metrics
    are dropped (they described the old diffusion; rerun ``vct evaluate-generator``).
    """
    from vctcore.devices import autocast, describe_device
    from vctcore.generator import Generator
    from vctcore.train.diffusion_training import diffusion_loss, diffusion_step, noise_generator

    if steps < 1 or batch_size < 1 or lr <= 0 or val_patients < 1:
        raise ValueError(f"steps, batch size and val patients must be at least 1 and lr positive "
                         f"(got {steps}, {batch_size}, {val_patients}, {lr})")
    checkpoint, cohort, run_dir = Path(checkpoint), Path(cohort), Path(run_dir)
    deadline = time.monotonic() + 60 * max_minutes if max_minutes is not None else None
    gen = Generator.from_pretrained(checkpoint, device=device, post=False)
    cfg = gen.cfg.diffusion
    table = cohort_table(cohort, limit)
    missing = [a for a in cfg.condition_on if a not in table]
    if missing:
        raise ValueError(f"{cohort / 'attributes.csv'} lacks the conditioning attribute(s) {', '.join(missing)}")
    if len(table) < val_patients + batch_size:
        raise ValueError(f"{cohort} has {len(table)} patients: too few for {val_patients} held out and "
                         f"batches of {batch_size}")
    ids = [str(i) for i in table["id"]]
    meta = run_meta(checkpoint, gen, cohort, ids, seed=seed, val_patients=val_patients, steps=steps,
                    batch_size=batch_size, lr=lr)
    check_run(run_dir, meta, ids)
    make_report = partial(ContinuationReport, "diffusion", "held-out loss")
    z_all = _cohort_latents(gen, cohort, run_dir, len(ids), progress, deadline)
    if z_all is None:
        return make_report(0, steps, 0.0, None, None, None, latents_done(run_dir), len(ids))
    bins_all = torch.from_numpy(attribute_bins(table, cfg.condition_on))
    dev = gen.device

    def amp():
        return autocast(dev, gen.cfg.precision)

    dm = copy.deepcopy(gen.dm).float()
    for p in dm.parameters():
        p.requires_grad_(True)
    ema = copy.deepcopy(dm).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    sched = dm.train_scheduler()

    # held-out loss: fixed noise and timesteps spread over the schedule, the same before and after
    g_val = torch.Generator().manual_seed(seed * 1000 + 7)
    z_val = torch.from_numpy(np.array(z_all[:val_patients])).repeat(VAL_DRAWS, 1, 1, 1, 1)
    b_val = bins_all[:val_patients].repeat(VAL_DRAWS, 1)
    n_val = len(z_val)
    noise_val = torch.randn(z_val.shape, generator=g_val)
    t_val = (torch.randperm(n_val, generator=g_val) * cfg.train_timesteps // n_val).long()

    @torch.no_grad()
    def val_loss(model: torch.nn.Module) -> float:
        was = model.training
        model.eval()
        total = 0.0
        for i in range(0, n_val, batch_size):
            sl = slice(i, i + batch_size)
            z0 = model.normalise(z_val[sl].to(dev))
            loss = diffusion_loss(model, sched, cfg, z0, noise_val[sl].to(dev), t_val[sl].to(dev),
                                  b_val[sl].to(dev), amp)
            total += float(loss) * len(z0)
        model.train(was)
        return total / n_val

    before = held_out_before(run_dir, "val_loss", lambda: val_loss(ema))

    sch = StageSchedule(steps=steps, batch_size=batch_size, lr=lr, checkpoint_every=checkpoint_every)
    opt = torch.optim.AdamW(dm.parameters(), lr=lr, weight_decay=1e-4)
    rng = np.random.default_rng(seed * 1000 + 40)
    gen_t = torch.Generator().manual_seed(seed * 1000 + 41)
    gen_noise = noise_generator(dev, seed * 1000 + 42)
    # the EMA starts from trained weights: no warm-up of its decay
    step = diffusion_step(dm, dm, ema, opt, sch, z_all[val_patients:], bins_all[val_patients:], rng, gen_t, dev, amp,
                          ema_decay=0.995, ema_warmup=False, noise_gen=gen_noise)

    def set_rng(state: dict) -> None:
        rng.bit_generator.state = state["numpy"]
        if "torch" in state:  # saved before run_loop kept the generators
            gen_t.set_state(state["torch"])

    result = run_loop("diffusion", run_dir, {"dm": dm, "ema": ema}, {"dm": opt}, sch, step,
                      rng_state=lambda: {"numpy": rng.bit_generator.state}, set_rng_state=set_rng,
                      generators={"torch": gen_t, "noise": gen_noise},
                      deadline=deadline, progress=progress)
    if not result.finished:
        return make_report(result.step, steps, result.seconds, before, None, None, len(ids), len(ids))
    after = val_loss(ema)
    record = continuation_record("diffusion", meta, result.seconds, describe_device(dev), "vct continue-diffusion",
                                 run_dir, val_loss_before=round(before, 5), val_loss_after=round(after, 5),
                                 base_diffusion_sha256=gen.checkpoint_sha256.get("diffusion.safetensors"))
    # fidelity figures described the old diffusion; the autoencoders' reconstruction figures still hold
    out = export_continuation(checkpoint, run_dir, ema, "diffusion.safetensors", "diffusion", gen.cfg.to_dict(), record,
                              half=True, support=_merged_support(gen.manifest.get("support", {}), table,
                                                                 cfg.condition_on))
    return make_report(result.step, steps, result.seconds, before, after, out, len(ids), len(ids))
