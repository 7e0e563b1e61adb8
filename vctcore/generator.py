"""The trained conditional CT generator: attributes in, whole-body CT (HU) + 16-class segmentation out.

    gen = Generator.from_pretrained()            # $VCT_GENERATOR or checkpoints/default, device "auto"
    patients = gen.generate(table, seed=0)       # table: sex, age_years, height_cm, weight_kg, ...

Pipeline (paper Fig. 2c): seeded Gaussian latent -> the checkpoint's sampler (DPM-Solver++(2M) for the
shipped default, DDIM or DDPM) with classifier-free guidance on the attribute bins -> Z = [Z_img, Z_seg]
-> image decoder D_img (+ post-processing U-Net) and segmentation decoder D_seg, both in Gaussian-blended
sliding windows so memory stays bounded.
Each patient's initial noise comes from (seed, row index) alone, so results do not depend on the
batch size, and the same seed and attributes give the same volume on the same device. Presets with
``precision: bf16`` sample and decode under bf16 autocast where the hardware has native bf16.

Decoding: the segmentation is the decoder's argmax with stray islands under ``cfg.seg_min_island_ml``
relabelled to their neighbours' class (:mod:`vctcore.label_islands`; a decoding option, ``DECODING_KEYS``,
changeable without retraining); the CT is untouched by it. The post-processor runs in Gaussian-blended
windows of its training patch (:func:`post_window`), never on the whole volume: its U-Net's instance norm
would see other statistics than in training. Its correction is added to the float32 image.
On CPU the decoders and the post-processor are held channels-last, every convolution is routed to oneDNN
(:mod:`vctcore.models.onednn`) and the diffusion U-Net's attention is torch's fused
``scaled_dot_product_attention`` (``LatentDiffusion(..., fused_attention=True)``: same weights, same function).

Composition: a checkpoint may hold ``composition_guide.safetensors`` (:class:`~vctcore.models.attribute_guidance.
LinearGuide`, listed in the manifest). Then the noisier solver steps are steered toward the values of its
attributes (e.g. ``bfp_pct``, ``mmp_pct``, ``weight_kg``) that a row gives; a row without them, or
``generate(..., composition=False)``, samples from the bins alone as before, and so do the DDIM and DDPM
samplers (the guide reads DPM-Solver++'s clean-latent estimates).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from vctcore.assets import default_generator, shipped_generator
from vctcore.label_islands import min_island_voxels, remove_small_islands
from vctcore.labels import MERGED_CLASSES
from vctcore.models.attribute_guidance import LinearGuide
from vctcore.models.autoencoders import SegAE, StackedImageAE, unit_to_hu
from vctcore.models.checkpoint import CheckpointError, load_module, sha256_file
from vctcore.models.conditioning import attribute_bins
from vctcore.models.config import GeneratorConfig
from vctcore.models.diffusion import LatentDiffusion
from vctcore.models.postprocess import PostProcessor, post_conditions, post_input
from vctcore.devices import autocast
from vctcore.models.onednn import route_convolutions_to_onednn
from vctcore.models.windowed import windowed
from vctcore.volume import CTVolume, LabelMap, make_affine

#: the shipped default generator directory (:func:`vctcore.assets.shipped_generator`)
DEFAULT_CHECKPOINT = shipped_generator()
#: sliding-window size of the decoders, in latent voxels
DECODE_ROI = (64, 64, 96)
#: the optional composition guide in a checkpoint directory
GUIDE_FILE = "composition_guide.safetensors"


def post_window(cfg: GeneratorConfig) -> tuple[int, int, int] | None:
    """The post-processor's sliding window in image voxels (X, Y, Z): its training patch. Its U-Net
    normalises each window on its own (MONAI UNet, instance norm), so a window of another size
    (say, the whole volume, mostly air) gives it other statistics than it was trained on (run whole,
    the shipped generator's muscle came out darker: checkpoints/default/notes.md). None (the whole
    volume in one window) for a preset without a post patch."""
    sch = cfg.schedules.get("post")
    return tuple(sch.patch) if sch is not None and sch.patch is not None else None  # type: ignore[return-value]


@dataclass(frozen=True)
class GeneratedPatient:
    """One synthetic patient: CT in HU, merged-class segmentation, the attributes it was asked for."""

    id: str
    ct: CTVolume
    seg: LabelMap
    attributes: dict[str, Any]
    seed: int


def patient_seed(seed: int, index: int) -> int:
    """Seed of row ``index`` of a call with ``seed`` (independent of batching)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


class Generator:
    """A loaded generator checkpoint on one device."""

    def __init__(self, cfg: GeneratorConfig, ae: StackedImageAE, seg_ae: SegAE, dm: LatentDiffusion,
                 post: PostProcessor | None, manifest: dict[str, Any], path: Path, device: torch.device,
                 guide: LinearGuide | None = None) -> None:
        self.cfg, self.ae, self.seg_ae, self.dm, self.post, self.guide = cfg, ae, seg_ae, dm, post, guide
        self.manifest, self.path, self.device = manifest, path, device
        # The decoders and the post-processor run channels-last on CPU: oneDNN's transposed convolutions
        # are faster so, and the post-processor's input is then built in the layout its convolutions
        # read. The diffusion U-Net stays contiguous: channels-last was slower for it.
        # Not measured on CUDA, so left as it is there.
        self.decode_format = torch.channels_last_3d if device.type == "cpu" else torch.contiguous_format
        for m in (ae, seg_ae, post):
            if m is not None:
                m.to(memory_format=self.decode_format)
        if device.type == "cpu":
            for m in (ae, seg_ae, dm, post):
                if m is not None:
                    route_convolutions_to_onednn(m)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: str = "auto", *, verify: bool = True,
                        post: bool = True) -> "Generator":
        """Load a generator directory (default: ``$VCT_GENERATOR``, else the shipped ``checkpoints/default``;
        :func:`vctcore.assets.default_generator`).

        ``verify`` checks every file against the manifest's sha256. Raises CheckpointError naming the
        file for anything missing, corrupt, truncated, tampered with or of another architecture.
        """
        from vctcore.devices import resolve_device

        root = Path(path) if path is not None else default_generator()
        if not root.is_dir():
            raise CheckpointError(f"{root}: generator checkpoint directory does not exist")
        manifest = read_checkpoint_json(root / "manifest.json")
        cfg_dict = read_checkpoint_json(root / "config.json")
        if verify:
            for name, digest in manifest.get("files", {}).items():
                f = root / name
                if not f.exists():
                    raise CheckpointError(f"{f}: listed in the manifest but missing")
                if sha256_file(f) != digest:
                    raise CheckpointError(f"{f}: sha256 differs from the manifest (corrupt or modified file)")
        try:
            cfg = GeneratorConfig.from_dict(cfg_dict)
        except ValueError as err:
            raise CheckpointError(f"{root / 'config.json'}: {err}") from None
        dev = resolve_device(device)
        ae, seg_ae = StackedImageAE(cfg.image_ae), SegAE(cfg.seg_ae)
        # fused attention measured faster on CPU; CUDA keeps the path its timings and determinism were checked on
        dm = LatentDiffusion(cfg.diffusion, cfg.latent_channels, fused_attention=dev.type == "cpu")
        load_module(ae, root / "image_ae.safetensors", kind="image_ae")
        load_module(seg_ae, root / "seg_ae.safetensors", kind="seg_ae")
        load_module(dm, root / "diffusion.safetensors", kind="diffusion")
        pp = None
        if post and cfg.post.enabled and (root / "post.safetensors").exists():
            pp = PostProcessor(cfg.post)
            load_module(pp, root / "post.safetensors", kind="post")
            pp = pp.to(dev).eval()
        guide = None
        if (root / GUIDE_FILE).exists():
            if verify and GUIDE_FILE not in manifest.get("files", {}):
                raise CheckpointError(f"{root / GUIDE_FILE}: not listed in the manifest")
            try:
                guide = LinearGuide.load(root / GUIDE_FILE)
            except ValueError as err:
                raise CheckpointError(str(err)) from None
            if any(w.shape[1] != cfg.latent_channels * int(np.prod(cfg.latent_shape)) for w, _ in guide.maps.values()):
                raise CheckpointError(f"{root / GUIDE_FILE}: its maps do not fit this generator's latent")
        return cls(cfg, ae.to(dev).eval(), seg_ae.to(dev).eval(), dm.to(dev).eval(), pp, manifest, root, dev, guide)

    @property
    def checkpoint_sha256(self) -> dict[str, str]:
        return dict(self.manifest.get("files", {}))

    def support_warnings(self, table: pd.DataFrame) -> list[str]:
        """One message per conditioning attribute with values outside the training support."""
        msgs = []
        for name, sup in self.manifest.get("support", {}).items():
            if name not in table:
                continue
            col = table[name].dropna()
            if "categories" in sup:
                bad = sorted({str(v) for v in col if str(v) not in sup["categories"]})
                if bad:
                    msgs.append(f"{name}: {', '.join(bad)} not in the training data ({', '.join(sup['categories'])})")
            else:
                out = col[(col < sup["min"]) | (col > sup["max"])]
                if len(out):
                    msgs.append(f"{name}: {len(out)} value(s) outside the training range "
                                f"{sup['min']:g}-{sup['max']:g} (e.g. {float(out.iloc[0]):g})")
        return msgs

    @torch.no_grad()
    def decode(self, z: torch.Tensor, attributes: Mapping[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Joint latent (1, C, *latent) -> (HU float32 (X, Y, Z), merged classes uint8 (X, Y, Z)). The
        classes are the segmentation decoder's argmax with stray islands under ``cfg.seg_min_island_ml``
        relabelled to their neighbours' class.

        ``attributes`` (one patient's, e.g. ``{"sex": "F", "age_years": 62}``) reach a post-processor
        that reads them (``post.condition_on``); missing ones count as "none"."""
        c_img = self.cfg.image_ae.levels[-1].embedding_dim
        with autocast(self.device, self.cfg.precision):
            x = windowed(self.ae.decode, z[:, :c_img], DECODE_ROI).float()
            logits = windowed(self.seg_ae.decode, z[:, c_img:], DECODE_ROI)  # bf16 under bf16 autocast
            if self.post is not None:
                names = self.post.cfg.condition_on
                conds = post_conditions(names, {k: [(attributes or {}).get(k)] for k in names}) if names else None
                # the input in the decoders' precision (the post's convolutions would round it so anyway);
                # its correction is added to the float32 image
                roi, post_fn, fmt = post_window(self.cfg), self.post.residual, self.decode_format
                if roi is not None and fmt != torch.contiguous_format:
                    # MONAI cuts its windows slowly out of a channels-last volume: cut them from a
                    # contiguous input (the same output) and hand each window to the convolutions channels-last
                    post_fn = lambda w: self.post.residual(w.contiguous(memory_format=self.decode_format))  # noqa: E731
                    fmt = torch.contiguous_format
                inp = post_input(self.post.cfg, x, logits, conds, dtype=logits.dtype, memory_format=fmt)
                x = x + windowed(post_fn, inp, roi).float()
        hu = unit_to_hu(x, self.cfg.image_ae.hu_clip)[0, 0].float().cpu().numpy()
        seg = logits[0].argmax(0).to(torch.uint8).cpu().numpy()
        if self.cfg.seg_min_island_ml > 0:
            seg, _ = remove_small_islands(seg, min_island_voxels(self.cfg.seg_min_island_ml, self.cfg.spacing_mm))
        return hu, seg

    def generate(self, table: pd.DataFrame, *, seed: int = 0, guidance_scale: float | None = None,
                 steps: int | None = None, batch_size: int = 1, sampler: str | None = None,
                 progress: Callable[[int, int], None] | None = None, index_offset: int = 0,
                 composition: bool = True) -> list[GeneratedPatient]:
        """One synthetic patient per row of ``table`` (conditioning columns as in vctcore.attributes;
        missing columns or values mean "none"). ``progress(done, total)`` is called per patient.
        Row ``i`` is seeded with ``patient_seed(seed, index_offset + i)``. With a composition guide and
        ``composition``, sampling is steered toward the row's values of the guide's attributes (module
        docstring); ``composition=False`` samples from the bins alone."""
        table = table.reset_index(drop=True)
        bins_all = torch.from_numpy(attribute_bins(table, self.cfg.diffusion.condition_on))
        affine = make_affine(self.cfg.spacing_mm, tuple(self.manifest.get("origin_mm", (0.0, 0.0, 0.0))))
        out: list[GeneratedPatient] = []
        steered = composition and (sampler or self.cfg.diffusion.sampler) == "dpm++"  # the guide's solver
        for start in range(0, len(table), batch_size):
            rows = list(range(start, min(start + batch_size, len(table))))
            seeds = [patient_seed(seed, index_offset + i) for i in rows]
            noise = torch.cat([torch.randn((1, self.cfg.latent_channels, *self.cfg.latent_shape),
                                           generator=torch.Generator().manual_seed(s)) for s in seeds])
            # initial noise is drawn on the CPU (the same latents on every device); DDPM's per-step noise
            # is drawn where the sampling runs, as MONAI's scheduler asks (same seed, same volume per device)
            gen = torch.Generator(device=self.device).manual_seed(seeds[0])
            steer = self._steer([table.iloc[i].to_dict() for i in rows]) if steered else None
            with autocast(self.device, self.cfg.precision):
                z = self.dm.sample(bins_all[rows].to(self.device), noise.to(self.device), steps=steps,
                                   guidance_scale=guidance_scale, sampler=sampler, generator=gen, steer=steer).float()
            for j, i in enumerate(rows):
                attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in table.iloc[i].items()}
                hu, seg = self.decode(z[j:j + 1], attrs)
                pid = str(attrs.get("id", f"S{index_offset + i:04d}"))
                out.append(GeneratedPatient(pid, CTVolume(hu, affine), LabelMap(seg, affine, {k: v for k, v in MERGED_CLASSES.items() if k}),
                                            attrs, seeds[j]))
                if progress is not None:
                    progress(len(out), len(table))
        return out

    def _steer(self, rows: list[dict[str, Any]]) -> Callable[[torch.Tensor, int], torch.Tensor] | None:
        """The guide's steer toward ``rows``' composition values, or None (no guide, or no row asks)."""
        if self.guide is None:
            return None
        targets = self.guide.targets(rows)
        if bool(torch.isnan(targets).all()):
            return None
        strength = float(self.guide.meta.get("strength", 1.0))
        return self.guide.make_steer(targets.to(self.device), strength)


def read_checkpoint_json(path: Path) -> dict[str, Any]:
    """A generator directory's JSON file (manifest.json, config.json); CheckpointError naming the file
    when it is missing or not JSON."""
    if not path.exists():
        raise CheckpointError(f"{path}: missing from the generator checkpoint")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None
