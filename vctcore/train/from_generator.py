"""A generator directory (``checkpoints/default``, an exported run) read as a run's finished stages.

``vct train --from-run GENERATOR_DIR`` starts a new run from a shipped generator the way it starts from
an earlier run (:mod:`vctcore.train.branch`): the stages whose config is unchanged come over finished,
and ``--warm-start diffusion`` starts a retrained diffusion from the generator's (its first and last
convolutions grafted where the joint latent changed). A generator directory holds one file per network,
so :func:`generator_as_run` writes the per-stage files a run holds, once, into a folder of the new run.
"""
from __future__ import annotations

import json
from pathlib import Path

from vctcore.models.checkpoint import CheckpointError, save_module

#: the folder of a new run that holds the generator's networks as stage files
FOLDER = "from_generator"


def is_generator_dir(path: str | Path) -> bool:
    """Whether ``path`` is an exported generator (config.json and manifest.json), not a training run."""
    path = Path(path)
    return (path / "manifest.json").is_file() and (path / "config.json").is_file() and not (path / "run.json").exists()


def generator_as_run(gen_dir: str | Path, out: str | Path) -> Path:
    """Write ``out`` as a finished run holding the generator at ``gen_dir`` (every file checked against its
    manifest first; CheckpointError naming a bad one) and return ``out``.

    ``out/models/``: ``image_ae_<i>`` (level i of the stacked image AE), ``seg_ae`` and ``seg_decoder``
    (both the generator's segmentation AE: its decoder is the fine-tuned one, over the encoder and codebook
    the diffusion's latents were encoded with), ``diffusion`` and ``post`` (when the generator has one).
    ``out/run.json``: the generator's config, the training cohort, fingerprint and seed its manifest records,
    and ``generator`` (the directory and the sha256 of each of its files), which identifies the source
    when the new run is resumed elsewhere. Written float32 with the same tensors on every call, so two runs
    started from one generator share their autoencoders
    (:func:`vctcore.train.warm_start.shared_latent_channels`).
    """
    from vctcore.generator import Generator, read_checkpoint_json

    gen_dir, out = Path(gen_dir), Path(out)
    meta_path = out / "run.json"
    # written before from this generator (a resumed run): nothing to load
    if meta_path.exists() and json.loads(meta_path.read_text()).get("generator", {}).get("files") == \
            read_checkpoint_json(gen_dir / "manifest.json").get("files"):
        return out
    gen = Generator.from_pretrained(gen_dir, device="cpu", verify=True)
    files = gen.checkpoint_sha256
    training = gen.manifest.get("training", {})
    if "seed" not in training:
        raise CheckpointError(f"{gen_dir / 'manifest.json'}: records no training seed; not a vct training export")
    cfg = gen.cfg.to_dict()
    models = out / "models"
    for i, level in enumerate(gen.ae.levels):
        save_module(level, models / f"image_ae_{i + 1}.safetensors", kind="vq_level", config=cfg)
    for stage in ("seg_ae", "seg_decoder"):
        save_module(gen.seg_ae, models / f"{stage}.safetensors", kind="seg_ae", config=cfg)
    save_module(gen.dm, models / "diffusion.safetensors", kind="diffusion", config=cfg)
    if gen.post is not None:
        save_module(gen.post, models / "post.safetensors", kind="post", config=cfg)
    meta_path.write_text(json.dumps({
        "config": cfg, "cohort": training.get("cohort"), "cohort_fingerprint": training.get("cohort_fingerprint"),
        "seed": training["seed"], "generator": {"path": str(gen_dir.resolve()), "files": files}}, indent=2))
    return out
