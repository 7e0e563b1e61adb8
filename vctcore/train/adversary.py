"""The adversarial term of an autoencoder stage: a MONAI patch discriminator, its optimiser and losses."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from monai.networks.nets import PatchDiscriminator
from torch import nn

from vctcore.models.losses import adversarial_loss

if TYPE_CHECKING:
    from vctcore.train.stages import StageContext


class Adversary:
    """Patch discriminator and its optimiser for the adversarial term of an autoencoder stage."""

    def __init__(self, ctx: StageContext, stage: str,
                 optimiser: Callable[[nn.Module, float], torch.optim.Optimizer]) -> None:
        sch = ctx.schedule(stage)
        # the start is read at every step: a time budget may shorten the stage (and its start) mid-run
        self.weight, self.start = sch.adversarial_weight, lambda: ctx.schedule(stage).adversarial_start
        self.disc = PatchDiscriminator(spatial_dims=3, num_layers_d=3, channels=32, in_channels=1,
                                       out_channels=1).to(ctx.device) if self.weight > 0 else None
        self.opt = optimiser(self.disc, sch.lr) if self.disc is not None else None
        self.loss = adversarial_loss()

    def active(self, step: int) -> bool:
        return self.disc is not None and step >= self.start()

    def generator_term(self, fake: torch.Tensor) -> torch.Tensor:
        return self.weight * self.loss(self.disc(fake)[-1], target_is_real=True, for_discriminator=False)

    def discriminator_step(self, fake: torch.Tensor, real: torch.Tensor) -> float:
        self.opt.zero_grad(set_to_none=True)
        d = 0.5 * (self.loss(self.disc(fake.detach())[-1], target_is_real=False, for_discriminator=True)
                   + self.loss(self.disc(real)[-1], target_is_real=True, for_discriminator=True))
        d.backward()
        self.opt.step()
        return d.item()
