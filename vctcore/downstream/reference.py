"""The reference downstream model: a 2.5D regressor over a coronal and a sagittal slice.

As the paper's model (section 4.3.1): ONE shared 2D image encoder reads the coronal and the sagittal
image separately, their feature vectors are concatenated, and a linear layer gives one number. The
paper's encoder is a Swin-B with ImageNet-21k weights, a GPU-scale choice whose weights cannot be fetched
offline; here it is a small MONAI ``ResNet`` (2D, basic blocks, group norm, global average pooling),
trained from scratch in minutes on two CPU cores: ~0.3 M parameters, 4 stages of widths
``block_inplanes``, a stride-2 7 x 7 stem and a max-pool, so a 288 x 96 image is read at 72 x 24 after
the stem. Group norm behaves the same in training and evaluation and with batches of any size.

The output is in the target's unit (% for BFP/MMP): the head predicts the target standardised with the
training mean and SD, kept in the module's buffers ``target_mean``/``target_sd`` (saved with the weights).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from monai.networks.nets import ResNet
from torch import nn

#: the architecture's name in model cards (``backbone.architecture``)
ARCHITECTURE = "vct-reference-2.5d/1"
#: names (and order) of the forward's inputs; also the card's input names and planes
INPUT_NAMES = ("coronal", "sagittal")


@dataclass(frozen=True)
class ReferenceConfig:
    """Settings of the shared MONAI ResNet: widths and blocks per stage, stem kernel and stride, groups of
    the group norm (must divide every width)."""

    block_inplanes: tuple[int, ...] = (16, 32, 64, 128)
    layers: tuple[int, ...] = (1, 1, 1, 1)
    conv1_size: int = 7
    conv1_stride: int = 2
    norm_groups: int = 4

    def __post_init__(self) -> None:
        if len(self.block_inplanes) != len(self.layers) or not self.layers:
            raise ValueError(f"ReferenceConfig: block_inplanes {self.block_inplanes} and layers {self.layers} "
                             "must be non-empty and of the same length")
        if any(int(w) < 1 or int(w) % self.norm_groups for w in self.block_inplanes):
            raise ValueError(f"ReferenceConfig: norm_groups {self.norm_groups} must divide every width in "
                             f"block_inplanes {self.block_inplanes}")
        if any(int(n) < 1 for n in self.layers) or self.conv1_size < 1 or self.conv1_stride < 1:
            raise ValueError(f"ReferenceConfig: layers, conv1_size and conv1_stride must be positive, got {self}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceConfig:
        """The config from ``to_dict``'s output; ValueError naming unknown keys."""
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"ReferenceConfig: unknown key(s) {', '.join(unknown)}")
        return cls(**{k: tuple(int(x) for x in v) if isinstance(v, list) else int(v) for k, v in data.items()})


class ReferenceRegressor(nn.Module):
    """forward(coronal (N, 1, H, W), sagittal (N, 1, H, W)) in [0, 1] -> (N,) predictions in the target's unit.

    ``target_mean``/``target_sd``: the training target's mean and SD (target unit), buffers; the head
    predicts (y - mean) / sd and starts at zero (the mean)."""

    def __init__(self, config: ReferenceConfig = ReferenceConfig(), target_mean: float = 0.0,
                 target_sd: float = 1.0) -> None:
        super().__init__()
        if not target_sd > 0:
            raise ValueError(f"ReferenceRegressor: target_sd must be positive, got {target_sd}")
        self.config = config
        self.backbone = ResNet(block="basic", layers=list(config.layers), block_inplanes=list(config.block_inplanes),
                               spatial_dims=2, n_input_channels=1, conv1_t_size=config.conv1_size,
                               conv1_t_stride=config.conv1_stride, feed_forward=False,
                               norm=("group", {"num_groups": config.norm_groups}))
        features = config.block_inplanes[-1]
        self.head = nn.Linear(2 * features, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("target_mean", torch.tensor(float(target_mean)))
        self.register_buffer("target_sd", torch.tensor(float(target_sd)))

    def standardised(self, coronal: torch.Tensor, sagittal: torch.Tensor) -> torch.Tensor:
        """(N,) predictions of the standardised target (the training loss is taken on these)."""
        n = coronal.shape[0]
        features = self.backbone(torch.cat([coronal, sagittal], dim=0))
        return self.head(torch.cat([features[:n], features[n:]], dim=1))[:, 0]

    def forward(self, coronal: torch.Tensor, sagittal: torch.Tensor) -> torch.Tensor:
        return self.standardised(coronal, sagittal) * self.target_sd + self.target_mean


def backbone_card(config: ReferenceConfig) -> dict[str, Any]:
    """The card's ``backbone`` field of a reference model: architecture name, MONAI network and config."""
    return {"architecture": ARCHITECTURE, "network": "monai.networks.nets.ResNet (2D, shared by both planes)",
            "config": config.to_dict()}


def config_from_card(backbone: dict[str, Any] | None) -> ReferenceConfig:
    """The ReferenceConfig in a card's ``backbone``; ValueError when it is not a reference backbone."""
    if not backbone or backbone.get("architecture") != ARCHITECTURE or not isinstance(backbone.get("config"), dict):
        found = (backbone or {}).get("architecture")
        raise ValueError(f"backbone.architecture must be {ARCHITECTURE!r} with a config mapping, got {found!r}")
    return ReferenceConfig.from_dict(backbone["config"])


__all__ = ["ARCHITECTURE", "INPUT_NAMES", "ReferenceConfig", "ReferenceRegressor", "backbone_card",
           "config_from_card"]
