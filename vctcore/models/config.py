"""Model and training configuration: plain dataclasses read from preset YAML files.

A preset fixes the grid the generator works on (voxels (X, Y, Z) and spacing in mm), the network
sizes of every stage and the training schedule of every stage. The same dataclasses are stored as
JSON inside each checkpoint so that a checkpoint rebuilds its own architecture.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PRESET_DIR = Path(__file__).resolve().parent.parent / "train" / "presets"


@dataclass(frozen=True)
class VQLevel:
    """One VQ-VAE level: ``in_channels`` -> ``embedding_dim`` latent channels, down by 2**len(channels)."""

    in_channels: int
    channels: tuple[int, ...]
    num_res_layers: int
    embedding_dim: int
    num_embeddings: int


@dataclass(frozen=True)
class ImageAEConfig:
    """Stacked image autoencoder; ``levels[0]`` sees HU images, each next level the previous latent."""

    levels: tuple[VQLevel, ...]
    hu_clip: tuple[float, float] = (-1024.0, 3071.0)
    soft_window_hu: tuple[float, float] = (-200.0, 300.0)
    hard_window_hu: tuple[float, float] = (300.0, 3071.0)
    mw_weights: tuple[float, float, float] = (3.0, 1.0, 1.0)  # soft, hard, other
    snap_between_levels: bool = True

    @property
    def factor(self) -> int:
        """Total down-sampling per axis."""
        f = 1
        for lv in self.levels:
            f *= 2 ** len(lv.channels)
        return f


@dataclass(frozen=True)
class SegAEConfig:
    """Segmentation autoencoder on one-hot merged classes (background + 16).

    ``pack``: the segmentation latent is ``pack`` times finer per axis than the image latent and joins
    it packed by space-to-depth (each pack^3 block of its voxels becomes pack^3 channels), so the joint
    latent keeps one grid: ``embedding_dim * pack**3`` segmentation channels. The level then downsamples
    by ``image factor / pack``. A finer segmentation latent is what lifts reconstruction Dice past the
    ~0.90 that a 24 mm latent allows on the cpu grid (checkpoints/default/notes.md).
    """

    level: VQLevel
    pack: int = 1

    def __post_init__(self) -> None:
        if self.pack < 1 or self.pack & (self.pack - 1):
            raise ValueError(f"seg_ae.pack must be a power of 2 (1, 2, 4, ...), got {self.pack}")

    @property
    def factor(self) -> int:
        """Down-sampling per axis of the segmentation VQ-VAE level itself (before packing)."""
        return 2 ** len(self.level.channels)

    @property
    def latent_channels(self) -> int:
        """Channels of the packed segmentation latent on the joint latent grid."""
        return self.level.embedding_dim * self.pack**3


#: ``ddim`` (deterministic), ``dpm++`` (DPM-Solver++(2M), deterministic, fewer steps for the same
#: fidelity) and ``ddpm`` (the 1000-step ancestral baseline)
SAMPLERS = ("ddim", "dpm++", "ddpm")


@dataclass(frozen=True)
class DiffusionConfig:
    """Latent diffusion U-Net and sampler defaults."""

    channels: tuple[int, ...] = (32, 64, 128)
    patch_size: int = 1
    attention_levels: tuple[bool, ...] = (False, False, True)
    num_res_blocks: int = 1
    num_head_channels: int = 32
    norm_num_groups: int = 8
    embedding_dim: int = 32
    condition_on: tuple[str, ...] = ("sex", "age_years", "height_cm", "weight_kg")
    condition_dropout: float = 0.2
    attribute_dropout: float = 0.1
    train_timesteps: int = 1000
    schedule: str = "scaled_linear_beta"
    beta_start: float = 0.0015
    beta_end: float = 0.0195
    prediction_type: str = "v_prediction"
    sample_steps: int = 20
    guidance_scale: float = 2.0
    #: the default sampler at generation (one of SAMPLERS)
    sampler: str = "ddim"
    #: (low, high] noise levels sigma = sqrt((1 - alpha_bar) / alpha_bar) of the normalised latent where
    #: classifier-free guidance applies; other steps run the conditional model alone (one U-Net call
    #: instead of two). None: guidance at every step. Kynkaenniemi et al. 2024, "Applying guidance in a
    #: limited interval improves sample and distribution quality in diffusion models".
    guidance_interval: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"diffusion.sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        gi = self.guidance_interval
        if gi is not None and not (len(gi) == 2 and 0 <= gi[0] < gi[1]):
            raise ValueError(f"diffusion.guidance_interval must be (low, high) noise levels with 0 <= low < high, got {gi}")


@dataclass(frozen=True)
class PostConfig:
    """Post-processing U-Net on decoded images (residual refinement). ``residual_gate``: scale the
    U-Net's correction by a learned scalar that starts at 0, so training starts from the identity
    (an ungated net first adds noise: L1 0.63 vs 0.04 before it at step 1).

    ``seg_input``: the U-Net also sees the class probabilities of the decoded segmentation (the joint
    latent's Z_seg), so it can restore each tissue's HU where the image decoder smoothed it away (thin
    bone, small organs in fat). ``window_weights`` (soft, hard, other): train with the multi-window L1
    of paper eq. 3 and these weights instead of a plain L1 (the HU windows are the image AE's).

    ``condition_on``: patient attributes the U-Net also reads, as constant one-hot channels of their
    conditioning bins ("none" included): patient-level properties that the 24 mm image latent does not
    carry (e.g. the age trend of trabecular bone density) can then be restored.

    ``core_weight``: add this weight x the L1 averaged over the *interior* of the true bone masks
    (bone and appendicular bones, eroded by one voxel in 3x3x3), in network units: the interior is a
    fraction of a percent of the voxels. On the cpu grid it lowers the lumbar column's excess density
    but cannot restore what the latents lose (the vertebrae's end plates and mid-body slices along z)
    and costs dense bone elsewhere (checkpoints/default/notes.md).
    """

    channels: tuple[int, ...] = (8, 16, 32)
    enabled: bool = True
    residual_gate: bool = False
    seg_input: bool = False
    window_weights: tuple[float, float, float] | None = None
    latent_noise: float = 0.0
    condition_on: tuple[str, ...] = ()
    core_weight: float = 0.0

    def __post_init__(self) -> None:
        if not self.core_weight >= 0:
            raise ValueError(f"post.core_weight must be a weight of at least 0, got {self.core_weight}")


#: learning-rate schedules a training stage may use
LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class StageSchedule:
    """Training schedule of one stage: steps, batch, patch size in voxels (X, Y, Z), learning rate.

    ``lr_schedule``: "constant" keeps ``lr``; "cosine" warms up linearly over 100 steps, then decays
    to 10 % of ``lr`` by the last step (:func:`vctcore.train.loop.warmup_cosine_lr`). The diffusion
    stage always uses the cosine.
    """

    steps: int
    batch_size: int = 1
    patch: tuple[int, int, int] | None = None
    lr: float = 1e-4
    checkpoint_every: int = 200
    adversarial_weight: float = 0.0
    adversarial_start: int = 0
    perceptual_weight: float = 0.0
    lr_schedule: str = "constant"

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")


@dataclass(frozen=True)
class TimeBudget:
    """Wall-time budget of a whole training run (minutes) and each stage's minutes at its full schedule
    on the reference machine the preset was timed on (how a run uses it: vctcore.train.budget)."""

    minutes: float
    reference_minutes: dict[str, float] = field(default_factory=dict)
    probe_steps: int = 10
    min_fraction: float = 0.1

    def __post_init__(self) -> None:
        if not self.minutes > 0:
            raise ValueError(f"time_budget.minutes must be positive, got {self.minutes}")
        if self.probe_steps < 1:
            raise ValueError(f"time_budget.probe_steps must be at least 1, got {self.probe_steps}")
        if not 0 < self.min_fraction <= 1:
            raise ValueError(f"time_budget.min_fraction must be in (0, 1], got {self.min_fraction}")
        bad = {k: v for k, v in self.reference_minutes.items() if not v > 0}
        if bad:
            raise ValueError(f"time_budget.reference_minutes must be positive: {bad}")


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything that defines a generator: grid, networks and training schedules.

    ``seg_min_island_ml``: generation relabels stray islands of the decoded segmentation smaller than
    this many mL (components of one class that are not its largest) to their neighbours' class
    (vctcore.label_islands); 0 keeps the decoder's argmax as it is. Like the diffusion's sampling keys it
    only sets how a trained generator decodes, so a run may change it without retraining.
    """

    name: str
    grid_shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    image_ae: ImageAEConfig
    seg_ae: SegAEConfig
    diffusion: DiffusionConfig
    post: PostConfig
    schedules: dict[str, StageSchedule] = field(default_factory=dict)
    precision: str = "fp32"  # "bf16" autocast on GPUs
    time_budget: TimeBudget | None = None
    seg_min_island_ml: float = 0.0

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        f = self.image_ae.factor
        return tuple(s // f for s in self.grid_shape)  # type: ignore[return-value]

    @property
    def latent_channels(self) -> int:
        return self.image_ae.levels[-1].embedding_dim + self.seg_ae.latent_channels

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GeneratorConfig":
        try:
            img = d["image_ae"]
            image_ae = ImageAEConfig(levels=tuple(VQLevel(**_tup(lv)) for lv in img["levels"]),
                                     **{k: _tup1(v) for k, v in img.items() if k != "levels"})
            seg_ae = SegAEConfig(level=VQLevel(**_tup(d["seg_ae"]["level"])),
                                 **{k: v for k, v in d["seg_ae"].items() if k != "level"})
            diffusion = DiffusionConfig(**_tup(d.get("diffusion", {})))
            post = PostConfig(**_tup(d.get("post", {})))
            schedules = {k: StageSchedule(**_tup(v)) for k, v in d.get("schedules", {}).items()}
            cfg = cls(name=str(d["name"]), grid_shape=tuple(int(v) for v in d["grid_shape"]),
                      spacing_mm=tuple(float(v) for v in d["spacing_mm"]), image_ae=image_ae,
                      seg_ae=seg_ae, diffusion=diffusion, post=post, schedules=schedules,
                      precision=str(d.get("precision", "fp32")),
                      time_budget=TimeBudget(**d["time_budget"]) if d.get("time_budget") else None,
                      seg_min_island_ml=float(d.get("seg_min_island_ml", 0.0)))
        except (KeyError, TypeError) as err:
            raise ValueError(f"generator config is incomplete or has an unknown field: {err}") from None
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise ValueError when the grid does not divide into the latent grid."""
        if not self.seg_min_island_ml >= 0:
            raise ValueError(f"seg_min_island_ml must be >= 0 mL, got {self.seg_min_island_ml}")
        f = self.image_ae.factor
        seg_f, pack = self.seg_ae.factor, self.seg_ae.pack
        if seg_f * pack != f:
            packed = f" and packs by {pack}" if pack > 1 else ""
            raise ValueError(f"segmentation autoencoder downsamples by {seg_f}{packed}, image autoencoder by {f}: "
                             "the two latents must share one grid (seg_ae.pack x its downsampling = the image's)")
        lat_div = f * self.diffusion.patch_size * 2 ** (len(self.diffusion.channels) - 1)
        bad = [s for s in self.grid_shape if s % lat_div]
        if bad:
            raise ValueError(f"grid {self.grid_shape} must be a multiple of {lat_div} on every axis")
        for stage, sch in self.schedules.items():
            # every patch goes through the image (or segmentation) autoencoder and back, and the post
            # patch also through the post U-Net: other sizes come back cropped and the loss cannot compare
            need = math.lcm(f, 2 ** (len(self.post.channels) - 1)) if stage == "post" else f
            if sch.patch is not None and any(p % need for p in sch.patch):
                raise ValueError(f"schedules.{stage}.patch {tuple(sch.patch)} must be a multiple of {need} "
                                 "voxels on every axis (the networks' downsampling)")


#: diffusion options that only set generation's defaults: a run may change them without retraining
SAMPLING_KEYS = ("sample_steps", "guidance_scale", "sampler", "guidance_interval")
#: top-level options that only set how generation decodes
DECODING_KEYS = ("seg_min_island_ml",)


def without_sampling(d: dict[str, Any]) -> dict[str, Any]:
    """A config dict without the diffusion section's ``SAMPLING_KEYS`` and the top-level ``DECODING_KEYS``
    (for comparing what training made)."""
    out = {k: v for k, v in d.items() if k not in DECODING_KEYS}
    if isinstance(out.get("diffusion"), dict):
        out["diffusion"] = {k: v for k, v in out["diffusion"].items() if k not in SAMPLING_KEYS}
    return out


def normalised_config(d: dict[str, Any]) -> dict[str, Any]:
    """A stored config (run.json, config.json) as JSON types with every option present: options added to
    the code after it was written appear at their defaults, so old and new configs compare equal."""
    return json.loads(json.dumps(GeneratorConfig.from_dict(d).to_dict()))


def _tup1(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _tup(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _tup1(v) for k, v in d.items()}


def load_preset(name_or_path: str | Path) -> GeneratorConfig:
    """A preset by name (``cpu``, ``paper``) or a YAML path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
        raise ValueError(f"unknown preset {name_or_path!r}; known presets: {known}")
    with open(path) as fh:
        return GeneratorConfig.from_dict(yaml.safe_load(fh))
