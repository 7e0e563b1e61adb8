"""The five training stages of the generator, in order (paper section 4.2):

1. ``image_ae_1``  image-facing VQ-VAE level (the paper's top level, E^(2)/D^(2)): multi-window L1
   + VQ commitment (+ patch adversarial, + perceptual where the preset enables them);
2. ``image_ae_2``  next level: encodes the level-1 latents (continuous, or quantised when the preset
   snaps between levels) and reconstructs the quantised level-1 latent that D^(1) expects; loss =
   latent L1 + image multi-window L1 through the frozen level-1 decoder (keeps the stack consistent);
3. ``seg_ae``      segmentation VQ-VAE on one-hot merged classes: Dice + CE;
4. ``latents``     encode every training patient to Z = [Z_img, Z_seg] (cached, resumable);
5. ``seg_decoder`` (optional: only when the preset schedules it) keep training the segmentation
   decoder with the encoder and codebook frozen: the latents stay valid, the decoding improves;
6. ``diffusion``   conditional latent diffusion (v-prediction, condition dropout, EMA weights);
7. ``post``        post-processing U-Net on autoencoder reconstructions: L1 (+ perceptual).

Each finished stage leaves ``<run>/models/<stage>.safetensors``; later stages load them frozen.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vctcore.models.autoencoders import SegAE, StackedImageAE, build_vq_level, hu_to_unit, one_hot, quantise
from vctcore.models.checkpoint import load_module, save_module
from vctcore.models.conditioning import attribute_bins, drop_conditions
from vctcore.models.config import GeneratorConfig, StageSchedule
from vctcore.models.diffusion import LatentDiffusion
from vctcore.models.losses import bone_interior, masked_l1, multi_window_l1, perceptual_loss, segmentation_loss
from vctcore.models.postprocess import PostProcessor, bins_one_hot, post_input
from vctcore.train.adversary import Adversary
from vctcore.train.budget import RunBudget
from vctcore.train.data import CohortArrays, PatchSampler
from vctcore.train.latents import encode_cohort, latents_done, load_latents
from vctcore.train.diffusion_training import diffusion_step, noise_generator
from vctcore.train.loop import Progress, StageResult, run_loop
from vctcore.train.held_out import diffusion_loss_figure, held_out_check, seg_decoder_dice_figure, start_from_generator
from vctcore.train.seeds import child_seed
from vctcore.train.warm_start import tuned_seg_ae_file, warm_start

STAGES = ("image_ae_1", "image_ae_2", "seg_ae", "latents", "seg_decoder", "diffusion", "post")
#: stages that run only when the preset has a schedule for them
OPTIONAL_STAGES = ("seg_decoder",)
#: stages that ``vct train --warm-start`` can start from an earlier run's weights
WARM_STAGES = ("diffusion",)
#: what each of a stage's random streams draws: patches or latent batches, condition dropout and noise on
#: the CPU, noise on a GPU, a held-out check's fixed draws (:func:`StageContext.stream_seed`)
STREAMS = ("samples", "torch", "device", "held_out")


@dataclass
class StageContext:
    """Everything a stage needs: config, data, run directory, device, seed, limits, progress."""

    cfg: GeneratorConfig
    data: CohortArrays
    run_dir: Path
    device: torch.device
    seed: int
    deadline: float | None = None
    progress: Progress | None = None
    rank: int = 0
    world: int = 1
    wrap: Callable[[nn.Module], nn.Module] = lambda m: m
    #: ``vct train --warm-start``: stages that start from this earlier run's weights where they fit
    warm_from: Path | None = None
    warm_stages: tuple[str, ...] = ()
    #: the preset's time budget for this run (vctcore.train.budget), and the stages still to run after
    #: the current one, each with the fraction of its full schedule left (what the budget predicts from)
    budget: RunBudget | None = None
    pending: dict[str, float] = field(default_factory=dict)
    #: ``vct train --from-run GENERATOR --stages``: stages trained on from the generator's weights (in
    #: ``warm_from``), and the first patients held out of their training (vctcore.train.train_on)
    train_on: tuple[str, ...] = ()
    val_patients: int = 0

    def held_out(self, stage: str) -> int:
        """Patients held out of ``stage``'s training: the first ``val_patients`` when it trains on, else 0."""
        return self.val_patients if stage in self.train_on else 0

    def model_path(self, stage: str) -> Path:
        return self.run_dir / "models" / f"{stage}.safetensors"

    def schedule(self, stage: str) -> StageSchedule:
        """The stage's schedule: the preset's, with the step count the time budget decided (if any)."""
        try:
            sch = self.cfg.schedules[stage]
        except KeyError:
            raise ValueError(f"preset {self.cfg.name!r} has no schedule for stage {stage!r}") from None
        return self.budget.schedule(stage, sch) if self.budget is not None else sch

    def latent_count(self) -> int:
        """Patients whose latents the diffusion trains on: all, or the preset's ``latents.steps``
        (a schedule, so a later run may raise it; encoding then continues where it stopped)."""
        n = len(self.data)
        sch = self.cfg.schedules.get("latents")
        return min(n, sch.steps) if sch is not None else n

    def stream_seed(self, stage: str, stream: str) -> int:
        """The seed of ``stage``'s random ``stream`` (:data:`STREAMS`) on this rank: the run seed's child
        ``(stage's index in STAGES, stream's index, rank)`` (:func:`vctcore.train.seeds.child_seed`)."""
        return child_seed(self.seed, STAGES.index(stage), STREAMS.index(stream), self.rank)

    def autocast(self):
        from vctcore.devices import autocast

        return autocast(self.device, self.cfg.precision)


def _adamw(module: nn.Module, lr: float) -> torch.optim.AdamW:
    return torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr, weight_decay=1e-4)


def _frozen(module: nn.Module) -> nn.Module:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def _finish(ctx: StageContext, stage: str, module: nn.Module, result: StageResult, kind: str) -> StageResult:
    if result.finished and ctx.rank == 0:
        save_module(module, ctx.model_path(stage), kind=kind, config=ctx.cfg.to_dict())
    return result


def _run(ctx: StageContext, stage: str, modules: dict[str, nn.Module], opts: dict[str, torch.optim.Optimizer],
         step_fn: Callable[[int], dict[str, float]], sampler: PatchSampler | np.random.Generator,
         generators: dict[str, torch.Generator | None] | None = None) -> StageResult:
    """Run a stage's steps under :func:`run_loop`, which saves ``sampler``'s state and that of each torch
    ``generators`` (noise, condition dropout; None entries are skipped), so a resumed stage draws what an
    uninterrupted one would."""
    if isinstance(sampler, PatchSampler):
        get, put = sampler.state, sampler.set_state
    else:
        def get() -> dict:
            return sampler.bit_generator.state

        def put(s: dict) -> None:
            sampler.bit_generator.state = s
    plan, probe = None, 0
    if ctx.budget is not None:
        plan = ctx.budget.planner(stage, ctx.cfg.schedules[stage], ctx.pending)
        probe = ctx.budget.budget.probe_steps
    return run_loop(stage, ctx.run_dir, modules, opts, ctx.schedule(stage), step_fn, rng_state=get,
                    set_rng_state=put, generators=generators, deadline=ctx.deadline, progress=ctx.progress,
                    is_main=ctx.rank == 0, plan=plan, probe_steps=probe)


def _sampler(ctx: StageContext, stage: str, p_class: float = 0.0) -> PatchSampler:
    """The stage's patch sampler over the patients its training sees (all but those held out)."""
    sch = ctx.schedule(stage)
    patch = tuple(sch.patch or ctx.cfg.grid_shape)
    return PatchSampler(ctx.data, patch, seed=ctx.stream_seed(stage, "samples"), p_class=p_class,
                        first=ctx.held_out(stage))


def _hu_patches(ctx: StageContext, sampler: PatchSampler, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of CT patches on the device: (HU, network units), each (B, 1, X, Y, Z)."""
    x_hu = sampler.batch(batch_size)[0].to(ctx.device)
    return x_hu, hu_to_unit(x_hu, ctx.cfg.image_ae.hu_clip)


def load_image_level(ctx: StageContext, index: int) -> nn.Module:
    vq = build_vq_level(ctx.cfg.image_ae.levels[index])
    load_module(vq, ctx.model_path(f"image_ae_{index + 1}"), kind="vq_level")
    return vq.to(ctx.device)


def train_image_ae_1(ctx: StageContext) -> StageResult:
    cfg, sch = ctx.cfg.image_ae, ctx.schedule("image_ae_1")
    vq = build_vq_level(cfg.levels[0]).to(ctx.device)
    model = ctx.wrap(vq)
    opt = _adamw(vq, sch.lr)
    adv = Adversary(ctx, "image_ae_1", _adamw)
    per = perceptual_loss().to(ctx.device) if sch.perceptual_weight > 0 else None
    sampler = _sampler(ctx, "image_ae_1")

    def step(i: int) -> dict[str, float]:
        x_hu, x = _hu_patches(ctx, sampler, sch.batch_size)
        with ctx.autocast():
            recon, qloss = model(x)
            rec = multi_window_l1(recon.float(), x, x_hu, cfg)
            loss = rec + qloss
            # every row of the stage log has the same columns: inactive terms are logged as 0
            out = {"loss": 0.0, "mw_l1": rec.item(), "vq": qloss.item()}
            if per is not None:
                p = sch.perceptual_weight * per(recon.float(), x)
                loss = loss + p
                out["perceptual"] = p.item()
            if adv.disc is not None:
                out["adv_g"] = out["adv_d"] = 0.0
            if adv.active(i):
                g = adv.generator_term(recon.float())
                loss = loss + g
                out["adv_g"] = g.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if adv.active(i):
            out["adv_d"] = adv.discriminator_step(recon.float(), x)
        out["loss"] = loss.item()
        return out

    modules = {"vq": vq, **({"disc": adv.disc} if adv.disc is not None else {})}
    opts = {"vq": opt, **({"disc": adv.opt} if adv.opt is not None else {})}
    return _finish(ctx, "image_ae_1", vq, _run(ctx, "image_ae_1", modules, opts, step, sampler), "vq_level")


def train_image_ae_2(ctx: StageContext) -> StageResult:
    cfg, sch = ctx.cfg.image_ae, ctx.schedule("image_ae_2")
    if len(cfg.levels) < 2:
        raise ValueError("image_ae_2 needs a preset with two image autoencoder levels")
    lower = _frozen(load_image_level(ctx, 0))
    vq = build_vq_level(cfg.levels[1]).to(ctx.device)
    model = ctx.wrap(vq)
    opt = _adamw(vq, sch.lr)
    sampler = _sampler(ctx, "image_ae_2")

    def step(i: int) -> dict[str, float]:
        x_hu, x = _hu_patches(ctx, sampler, sch.batch_size)
        with torch.no_grad():
            z1c = lower.encode(x)
            z1 = quantise(lower, z1c)
        with ctx.autocast():
            z1_hat, qloss = model(z1 if cfg.snap_between_levels else z1c)
            lat = F.l1_loss(z1_hat.float(), z1)
            img_in = quantise(lower, z1_hat) if cfg.snap_between_levels else z1_hat
            img = lower.decode(img_in.float())
            rec = multi_window_l1(img.float(), x, x_hu, cfg)
            loss = lat + rec + qloss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item(), "latent_l1": lat.item(), "mw_l1": rec.item(), "vq": qloss.item()}

    return _finish(ctx, "image_ae_2", vq, _run(ctx, "image_ae_2", {"vq": vq}, {"vq": opt}, step, sampler), "vq_level")


def train_seg_ae(ctx: StageContext) -> StageResult:
    sch = ctx.schedule("seg_ae")
    seg_ae = SegAE(ctx.cfg.seg_ae).to(ctx.device)
    model = ctx.wrap(seg_ae)
    opt = _adamw(seg_ae, sch.lr)
    crit = segmentation_loss()
    sampler = _sampler(ctx, "seg_ae", p_class=0.7)  # small organs as often as large ones

    def step(i: int) -> dict[str, float]:
        _, seg = sampler.batch(sch.batch_size)
        y = one_hot(seg.to(ctx.device))
        with ctx.autocast():
            logits, qloss = model(y)
            dice_ce = crit(logits.float(), y)
            loss = dice_ce + qloss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item(), "dice_ce": dice_ce.item(), "vq": qloss.item()}

    return _finish(ctx, "seg_ae", seg_ae, _run(ctx, "seg_ae", {"seg_ae": seg_ae}, {"seg_ae": opt}, step, sampler), "seg_ae")


def train_seg_decoder(ctx: StageContext) -> StageResult:
    """Fine-tune the segmentation decoder on the frozen encoder's quantised latents (Dice + CE).

    The encoder and codebook do not move, so the cached latents (and a diffusion model trained on
    them) stay valid; the result replaces ``seg_ae`` at export.
    """
    sch = ctx.schedule("seg_decoder")
    seg_ae = load_seg_ae(ctx)
    decoder = seg_ae.vq.decoder
    decoder.train()
    for p in decoder.parameters():
        p.requires_grad_(True)
    model = ctx.wrap(decoder)
    opt = _adamw(decoder, sch.lr)
    crit = segmentation_loss()
    sampler = _sampler(ctx, "seg_decoder", p_class=0.7)

    def step(i: int) -> dict[str, float]:
        _, seg = sampler.batch(sch.batch_size)
        y = one_hot(seg.to(ctx.device))
        with torch.no_grad():
            z = seg_ae.codes(y)
        with ctx.autocast():
            dice_ce = crit(model(z).float(), y)
        opt.zero_grad(set_to_none=True)
        dice_ce.backward()
        opt.step()
        return {"loss": dice_ce.item(), "dice_ce": dice_ce.item()}

    check = None
    if "seg_decoder" in ctx.train_on:
        check = held_out_check(ctx, "seg_decoder", seg_decoder_dice_figure(
            seg_ae, decoder, ctx.data, ctx.held_out("seg_decoder"), ctx.device, ctx.autocast))
    # only the decoder is trained and saved in the state (train mode on the whole AE would let the
    # quantiser's EMA move the codebook)
    result = _run(ctx, "seg_decoder", {"decoder": decoder}, {"decoder": opt}, step, sampler)
    if check is not None:
        check(result)
    return _finish(ctx, "seg_decoder", seg_ae, result, "seg_ae")


def image_ae_from_run(models: Path, cfg: GeneratorConfig) -> StackedImageAE:
    """The stacked image AE in a run's ``models`` folder (one ``image_ae_<i>`` stage file per level), on
    the CPU: what the later stages, the export and ``bench/diagnostics/run_modules.py`` read."""
    ae = StackedImageAE(cfg.image_ae)
    for i in range(len(cfg.image_ae.levels)):
        load_module(ae.levels[i], models / f"image_ae_{i + 1}.safetensors", kind="vq_level")
    return ae


def load_image_ae(ctx: StageContext) -> StackedImageAE:
    return _frozen(image_ae_from_run(ctx.run_dir / "models", ctx.cfg).to(ctx.device))


def load_seg_ae(ctx: StageContext, stage: str = "seg_ae") -> SegAE:
    """The frozen segmentation AE as the ``stage`` stage (``seg_ae`` or ``seg_decoder``) saved it."""
    seg_ae = SegAE(ctx.cfg.seg_ae)
    load_module(seg_ae, ctx.model_path(stage), kind="seg_ae")
    return _frozen(seg_ae.to(ctx.device))


def encode_latents(ctx: StageContext) -> StageResult:
    """Z = [Z_img, Z_seg] of every training patient, (N, C, *latent_shape) float32, resumable
    (:mod:`vctcore.train.latents`).

    Under DDP only rank 0 encodes; the other ranks wait at a barrier and then read the cache.
    """
    if ctx.world > 1:
        import torch.distributed as dist

        result = _encode_latents(ctx) if ctx.rank == 0 else None
        dist.barrier()
        if result is not None:
            return result
        n = ctx.latent_count()
        done = latents_done(ctx.run_dir)
        return StageResult("latents", done, n, done >= n, 0.0, {})
    return _encode_latents(ctx)


def _encode_latents(ctx: StageContext) -> StageResult:
    n = ctx.latent_count()
    done, seconds = encode_cohort(load_image_ae(ctx), load_seg_ae(ctx), ctx.cfg, ctx.data, ctx.run_dir, ctx.device,
                                  n=n, progress=ctx.progress, deadline=ctx.deadline)
    return StageResult("latents", min(done, n), n, done >= n, seconds, {})


def train_diffusion(ctx: StageContext, ema_decay: float = 0.995) -> StageResult:
    cfg, sch = ctx.cfg.diffusion, ctx.schedule("diffusion")
    z_all = load_latents(ctx.run_dir)
    bins_all = torch.from_numpy(attribute_bins(ctx.data.table, cfg.condition_on))[:len(z_all)]
    dm = LatentDiffusion(cfg, ctx.cfg.latent_channels)
    on, held = "diffusion" in ctx.train_on, ctx.held_out("diffusion")
    if on:  # the generator's (EMA) weights and latent statistics
        start_from_generator(ctx, "diffusion", dm, "diffusion")
    else:
        flat = torch.from_numpy(np.array(z_all[: min(len(z_all), 64)])).transpose(0, 1).reshape(z_all.shape[1], -1)
        dm.latent_mean.copy_(flat.mean(1))
        dm.latent_std.copy_(flat.std(1).clamp_min(1e-3))
        warm_start(ctx, "diffusion", dm, "diffusion")
    dm = dm.to(ctx.device)
    ema = _frozen(copy.deepcopy(dm))
    model = ctx.wrap(dm)
    opt = _adamw(dm, sch.lr)
    rng = np.random.default_rng(ctx.stream_seed("diffusion", "samples"))
    gen = torch.Generator().manual_seed(ctx.stream_seed("diffusion", "torch"))
    noise = noise_generator(ctx.device, ctx.stream_seed("diffusion", "device"))
    # an EMA that starts from trained weights (training on) has no warm-up of its decay
    step = diffusion_step(dm, model, ema, opt, lambda: ctx.schedule("diffusion"), z_all[held:], bins_all[held:], rng,
                          gen, ctx.device, ctx.autocast, ema_decay=ema_decay, ema_warmup=not on, noise_gen=noise)
    check = held_out_check(ctx, "diffusion", diffusion_loss_figure(
        ema, z_all[:held], bins_all[:held], ctx.stream_seed("diffusion", "held_out"), sch.batch_size, ctx.device,
        ctx.autocast)) if on else None
    result = _run(ctx, "diffusion", {"dm": dm, "ema": ema}, {"dm": opt}, step, rng, {"gen": gen, "noise": noise})
    if check is not None:
        check(result)
    return _finish(ctx, "diffusion", ema, result, "diffusion")


def tuned_seg_ae_from_run(models: Path, cfg: GeneratorConfig) -> SegAE:
    """The segmentation AE in a run's ``models`` folder as the generator will decode with it
    (:func:`tuned_seg_ae_file`), on the CPU."""
    seg_ae = SegAE(cfg.seg_ae)
    load_module(seg_ae, tuned_seg_ae_file(models), kind="seg_ae")
    return seg_ae


def load_tuned_seg_ae(ctx: StageContext) -> SegAE:
    """The frozen segmentation AE as the generator will decode with it (:func:`tuned_seg_ae_file`)."""
    return _frozen(tuned_seg_ae_from_run(ctx.run_dir / "models", ctx.cfg).to(ctx.device))


def _noisy_latent(z: torch.Tensor, scale: float, gen: torch.Generator) -> torch.Tensor:
    """``z`` (B, C, X, Y, Z) plus Gaussian noise of std U(0, scale) x the batch's per-channel std of ``z``,
    one scale per sample (``scale`` 0: ``z`` unchanged)."""
    if scale <= 0:
        return z
    sigma = torch.rand((z.shape[0], 1, 1, 1, 1), generator=gen).to(z.device) * scale
    noise = torch.randn(z.shape, generator=gen).to(z.device)
    return z + sigma * z.std(dim=(0, 2, 3, 4), keepdim=True) * noise


def train_post(ctx: StageContext) -> StageResult:
    """Post-processor on autoencoder reconstructions of training patches (the image AE's decode, plus
    the segmentation AE's class probabilities with ``post.seg_input``): plain L1, or the multi-window
    L1 with ``post.window_weights`` (+ perceptual, + ``post.core_weight`` x the L1 over the true bone
    masks' interior)."""
    sch, pcfg = ctx.schedule("post"), ctx.cfg.post
    ae = load_image_ae(ctx)
    seg_ae = load_tuned_seg_ae(ctx) if pcfg.seg_input else None
    window_cfg = replace(ctx.cfg.image_ae, mw_weights=pcfg.window_weights) if pcfg.window_weights else None
    post = PostProcessor(pcfg).to(ctx.device)
    model = ctx.wrap(post)
    opt = _adamw(post, sch.lr)
    per = perceptual_loss().to(ctx.device) if sch.perceptual_weight > 0 else None
    sampler = _sampler(ctx, "post")
    gen = torch.Generator().manual_seed(ctx.stream_seed("post", "torch"))

    # the attributes as the post-processor reads them, dropped to "none" as often as the diffusion's
    # conditions are, so that it also serves requests without them
    bins_all = attribute_bins(ctx.data.table, pcfg.condition_on)
    dcfg = ctx.cfg.diffusion

    def step(i: int) -> dict[str, float]:
        ct_hu, seg, idx = sampler.batch_with_index(sch.batch_size)
        x_hu, seg = ct_hu.to(ctx.device), seg.to(ctx.device)
        conds = None
        if pcfg.condition_on:
            bins = drop_conditions(torch.from_numpy(bins_all[idx]), dcfg.condition_dropout, dcfg.attribute_dropout, gen)
            conds = bins_one_hot(pcfg.condition_on, bins.numpy())
        x = hu_to_unit(x_hu, ctx.cfg.image_ae.hu_clip)
        # the frozen autoencoders run under the same autocast as at generation (Generator.decode),
        # which also makes them cheaper on CPUs with native bf16
        with torch.no_grad(), ctx.autocast():
            recon = ae.decode(_noisy_latent(ae.encode(x), pcfg.latent_noise, gen)).float()
            logits = seg_ae.decode(seg_ae.encode(one_hot(seg))).float() if seg_ae is not None else None
            inp = post_input(pcfg, recon, logits, conds)
        with ctx.autocast():
            out = model(inp).float()
            l1 = F.l1_loss(out, x)
            loss = multi_window_l1(out, x, x_hu, window_cfg) if window_cfg is not None else l1
            logs = {"l1": l1.item(), "l1_before": F.l1_loss(recon, x).item()}
            if window_cfg is not None:
                logs["mw_l1"] = loss.item()
            if pcfg.core_weight > 0:
                core = masked_l1(out, x, bone_interior(seg))
                loss = loss + pcfg.core_weight * core
                logs["core_l1"] = core.item()
            if per is not None:
                p = sch.perceptual_weight * per(out, x)
                loss = loss + p
                logs["perceptual"] = p.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item(), **logs}

    return _finish(ctx, "post", post, _run(ctx, "post", {"post": post}, {"post": opt}, step, sampler, {"gen": gen}),
                   "post")


RUNNERS: dict[str, Callable[[StageContext], StageResult]] = {
    "image_ae_1": train_image_ae_1,
    "image_ae_2": train_image_ae_2,
    "seg_ae": train_seg_ae,
    "latents": encode_latents,
    "diffusion": train_diffusion,
    "seg_decoder": train_seg_decoder,
    "post": train_post,
}
