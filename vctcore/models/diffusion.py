"""Latent diffusion on the joint latent Z = [Z_img, Z_seg] (paper section 4.1.2).

The denoiser is MONAI's ``DiffusionModelUNet`` with cross-attention to the attribute tokens of
``AttributeEmbedding``. Latents are normalised per channel (mean/std measured on the training
latents) so the diffusion runs on unit-variance data. Samplers (``diffusion.sampler``, the checkpoint's
default): DDIM or the 1000-step DDPM baseline (MONAI schedulers) or DPM-Solver++(2M)
(:mod:`vctcore.models.samplers`), with classifier-free guidance
eps = eps_uncond + g * (eps_cond - eps_uncond) computed in one batched forward pass. With
``diffusion.guidance_interval`` (low, high] only steps whose noise level sigma lies inside are guided; the
others run the conditional model alone. ``sample(steer=...)`` lets a caller move each DPM-Solver++ step's
clean-latent estimate (:mod:`vctcore.models.attribute_guidance`). Tensors are (B, C, X, Y, Z).

With ``patch_size`` p > 1 the U-Net runs on a space-to-depth view of the latent (each p^3 block
of latent voxels becomes p^3 channels, as the "patch size" of latent diffusion transformers;
MONAI's ``pixelunshuffle``): 8x fewer voxels for p = 2.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler
from monai.networks.utils import pixelshuffle, pixelunshuffle
from torch import nn

from vctcore.models.conditioning import AttributeEmbedding
from vctcore.models.config import SAMPLERS, DiffusionConfig
from vctcore.models.samplers import dpm_solver_pp_2m

#: MONAI DiffusionModelUNet's first and last convolutions: their input columns / output rows are latent channels
UNET_IN_CONV, UNET_OUT_CONV = "unet.conv_in.conv", "unet.out.2.conv"


class LatentDiffusion(nn.Module):
    """Conditional denoiser with its latent normalisation and attribute embeddings.

    ``fused_attention``: the U-Net's attention runs through torch's fused ``scaled_dot_product_attention``
    (MONAI's ``use_flash_attention``) instead of einsum + softmax; the same weights and the same function.
    Generation on CPU uses it (faster there, outputs as close to float32 as the einsum path:
    checkpoints/default/notes.md).
    """

    def __init__(self, cfg: DiffusionConfig, latent_channels: int, *, fused_attention: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = AttributeEmbedding(cfg.condition_on, cfg.embedding_dim)
        self.latent_channels = latent_channels
        unet_channels = latent_channels * cfg.patch_size**3
        self.unet = DiffusionModelUNet(
            spatial_dims=3,
            in_channels=unet_channels,
            out_channels=unet_channels,
            num_res_blocks=cfg.num_res_blocks,
            channels=cfg.channels,
            attention_levels=cfg.attention_levels,
            norm_num_groups=cfg.norm_num_groups,
            num_head_channels=cfg.num_head_channels,
            with_conditioning=True,
            cross_attention_dim=cfg.embedding_dim,
            use_flash_attention=fused_attention,
        )
        self.register_buffer("latent_mean", torch.zeros(latent_channels))
        self.register_buffer("latent_std", torch.ones(latent_channels))

    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.latent_mean.view(1, -1, 1, 1, 1)) / self.latent_std.view(1, -1, 1, 1, 1)

    def denormalise(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.latent_std.view(1, -1, 1, 1, 1) + self.latent_mean.view(1, -1, 1, 1, 1)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
        """Model output (v or eps, per ``cfg.prediction_type``) for noisy normalised latents."""
        return self.denoise(z_t, t, self.embed(bins))

    def denoise(self, z_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        p = self.cfg.patch_size
        return pixelshuffle(self.unet(pixelunshuffle(z_t, 3, p), timesteps=t, context=context), 3, p)

    def graft_latent_channels(self, old: Mapping[str, torch.Tensor], pairs: Sequence[tuple[int, int]]) -> list[str]:
        """Warm start across a changed joint latent (say, a finer segmentation latent beside the same image
        latent): copy the U-Net input columns and output rows of ``old`` (a LatentDiffusion state dict with
        the same U-Net widths and patch size) for each ``(old latent channel, new latent channel)`` in ``pairs``.

        After the U-Net's space-to-depth (MONAI ``pixelunshuffle``, channel-major), latent channel ``c`` is
        U-Net channels ``c * p^3 .. (c + 1) * p^3 - 1``. Input columns of the other latent channels are set to
        zero, so the U-Net starts out reading only what the old one read; their output rows keep their
        initialisation (MONAI zero-initialises that convolution). Returns the names of the tensors changed;
        ValueError when ``old``'s convolutions do not fit apart from their latent channels.
        """
        p3 = self.cfg.patch_size**3
        own = self.state_dict()
        names = {"in": f"{UNET_IN_CONV}.weight", "out": f"{UNET_OUT_CONV}.weight", "bias": f"{UNET_OUT_CONV}.bias"}
        for key in names.values():
            if key not in old:
                raise ValueError(f"the old diffusion state has no {key}")
        w_in, w_out = old[names["in"]], old[names["out"]]
        n_old = w_in.shape[1] // p3
        if (w_in.shape[1] % p3 or w_in.shape[0] != own[names["in"]].shape[0] or w_in.shape[2:] != own[names["in"]].shape[2:]
                or w_out.shape[1:] != own[names["out"]].shape[1:]):
            raise ValueError(f"the old diffusion U-Net's first or last convolution ({tuple(w_in.shape)}, "
                             f"{tuple(w_out.shape)}) does not fit this one's apart from latent channels")
        bad = [(o, n) for o, n in pairs if not (0 <= o < n_old and 0 <= n < self.latent_channels)]
        if bad:
            raise ValueError(f"latent channel pairs out of range (old {n_old}, new {self.latent_channels}): {bad}")
        new_in = torch.zeros_like(own[names["in"]])
        new_out, new_bias = own[names["out"]].clone(), own[names["bias"]].clone()
        for o, n in pairs:
            src, dst = slice(o * p3, (o + 1) * p3), slice(n * p3, (n + 1) * p3)
            new_in[:, dst] = w_in[:, src]
            new_out[dst] = w_out[src]
            new_bias[dst] = old[names["bias"]][src]
        self.load_state_dict({names["in"]: new_in, names["out"]: new_out, names["bias"]: new_bias}, strict=False)
        return list(names.values())

    def train_scheduler(self) -> DDPMScheduler:
        c = self.cfg
        return DDPMScheduler(num_train_timesteps=c.train_timesteps, schedule=c.schedule,
                             beta_start=c.beta_start, beta_end=c.beta_end, prediction_type=c.prediction_type)

    def sample_scheduler(self, kind: str = "ddim") -> DDIMScheduler | DDPMScheduler:
        """``ddim`` (deterministic, few steps) or ``ddpm`` (the 1000-step ancestral baseline)."""
        c = self.cfg
        common = dict(num_train_timesteps=c.train_timesteps, schedule=c.schedule, beta_start=c.beta_start,
                      beta_end=c.beta_end, prediction_type=c.prediction_type)
        if kind == "ddim":
            return DDIMScheduler(clip_sample=False, **common)
        if kind == "ddpm":
            return DDPMScheduler(clip_sample=False, **common)
        raise ValueError(f"MONAI schedulers here: 'ddim' or 'ddpm' (dpm++ is vctcore.models.samplers), got {kind!r}")

    def predict_x0(self, out: torch.Tensor, z_t: torch.Tensor, t: int, alphas_cumprod: torch.Tensor) -> torch.Tensor:
        """The clean-latent estimate from a model output (v or eps, per ``cfg.prediction_type``)."""
        a = alphas_cumprod[t].to(z_t.device, torch.float32)
        alpha, sigma = a.sqrt(), (1 - a).sqrt()
        if self.cfg.prediction_type == "v_prediction":
            return alpha * z_t - sigma * out
        return (z_t - sigma * out) / alpha

    @torch.no_grad()
    def sample(self, bins: torch.Tensor, noise: torch.Tensor, *, steps: int | None = None,
               guidance_scale: float | None = None, sampler: str | None = None, generator: torch.Generator | None = None,
               progress: Callable[[int, int], None] | None = None,
               steer: Callable[[torch.Tensor, int], torch.Tensor] | None = None) -> torch.Tensor:
        """Denormalised latents (B, C, X, Y, Z) from initial ``noise`` (B, C, X, Y, Z) and bins (B, n_attributes).

        DDIM (eta = 0) and DPM-Solver++ are deterministic given ``noise``; DDPM also draws from ``generator``.
        ``steer(x0, t)`` (DPM-Solver++ only; :mod:`vctcore.models.attribute_guidance`) may move each step's
        clean-latent estimate (normalised) before the solver uses it.
        """
        steps = steps or self.cfg.sample_steps
        sampler = sampler or self.cfg.sampler
        g = self.cfg.guidance_scale if guidance_scale is None else guidance_scale
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
        both = torch.cat([torch.zeros_like(bins), bins]) if g != 1.0 else bins
        context = self.embed(both)
        acp_all = self.train_scheduler().alphas_cumprod
        interval = self.cfg.guidance_interval

        def guide_at(t: int) -> bool:
            if g == 1.0:
                return False
            if interval is None:
                return True
            sigma = float(((1 - acp_all[t]) / acp_all[t]).sqrt())
            return interval[0] < sigma <= interval[1]

        def guided(z: torch.Tensor, t: int) -> torch.Tensor:
            if not guide_at(int(t)):  # the conditional half of the batch alone
                ctx = context[bins.shape[0]:] if g != 1.0 else context
                tt = torch.full((z.shape[0],), int(t), device=z.device, dtype=torch.long)
                return self.denoise(z, tt, ctx)
            tt = torch.full((both.shape[0],), int(t), device=z.device, dtype=torch.long)
            out_u, out_c = self.denoise(torch.cat([z, z]), tt, context).chunk(2)
            return out_u + g * (out_c - out_u)

        if steer is not None and sampler != "dpm++":
            raise ValueError(f"attribute steering needs the dpm++ sampler, got {sampler!r}")

        def x0_at(z: torch.Tensor, t: int) -> torch.Tensor:
            x0 = self.predict_x0(guided(z, t), z, t, acp_all)
            return steer(x0, int(t)) if steer is not None else x0

        if sampler == "dpm++":
            return self.denormalise(dpm_solver_pp_2m(x0_at, noise, acp_all, steps, progress))
        sched = self.sample_scheduler(sampler)
        sched.set_timesteps(num_inference_steps=steps if sampler == "ddim" else self.cfg.train_timesteps)
        z = noise
        timesteps = list(sched.timesteps)
        for i, t in enumerate(timesteps):
            out = guided(z, int(t))
            if sampler == "ddpm":
                z, _ = sched.step(out, int(t), z, generator=generator)
            else:
                z, _ = sched.step(out, int(t), z)
            if progress is not None:
                progress(i + 1, len(timesteps))
        return self.denormalise(z)
