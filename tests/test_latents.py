"""Encoding a cohort's joint latents (vctcore.train.latents): stopped and resumed, it gives what one pass gives."""
from __future__ import annotations

import time

import numpy as np
import pytest

from vctcore.generator import Generator
from vctcore.train.data import load_cohort
from vctcore.train.latents import encode_cohort, latents_done, load_latents


def test_stopped_encoding_resumes_to_the_same_latents(tiny_generator, tmp_path):
    gen = Generator.from_pretrained(tiny_generator["generator"], device="cpu", post=False)
    data = load_cohort(tiny_generator["cohort"], tuple(gen.cfg.grid_shape), tmp_path / "cache")
    n = len(data)
    assert n >= 3

    stopped = tmp_path / "stopped"
    done, _ = encode_cohort(gen.ae, gen.seg_ae, gen.cfg, data, stopped, gen.device, n=n,
                            deadline=time.monotonic() - 1)  # past already: one patient, then stop
    assert done == 1 and latents_done(stopped) == 1 and load_latents(stopped).shape[0] == 1
    done, _ = encode_cohort(gen.ae, gen.seg_ae, gen.cfg, data, stopped, gen.device, n=n)
    assert done == n and latents_done(stopped) == n

    once = tmp_path / "once"
    encode_cohort(gen.ae, gen.seg_ae, gen.cfg, data, once, gen.device)
    a, b = load_latents(stopped), load_latents(once)
    assert a.shape == (n, gen.cfg.latent_channels, *gen.cfg.latent_shape)
    np.testing.assert_array_equal(a, b)
    assert np.isfinite(a).all() and a.std() > 0
    # distinct patients give distinct latents (the rows are not one patient copied)
    assert not np.array_equal(a[0], a[1])


def test_segmentation_only_encoding_is_the_joint_latents_segmentation_half(tiny_generator, tmp_path):
    gen = Generator.from_pretrained(tiny_generator["generator"], device="cpu", post=False)
    data = load_cohort(tiny_generator["cohort"], tuple(gen.cfg.grid_shape), tmp_path / "cache")
    encode_cohort(gen.ae, gen.seg_ae, gen.cfg, data, tmp_path / "joint", gen.device, n=2)
    encode_cohort(None, gen.seg_ae, gen.cfg, data, tmp_path / "seg", gen.device, n=2)
    joint, seg = load_latents(tmp_path / "joint"), load_latents(tmp_path / "seg")
    c_img = gen.cfg.image_ae.levels[-1].embedding_dim
    assert seg.shape == (2, gen.cfg.seg_ae.latent_channels, *gen.cfg.latent_shape)
    np.testing.assert_array_equal(seg, joint[:, c_img:])

    # a run directory holding the other kind of latents is refused, not overwritten
    with pytest.raises(ValueError, match=r"z\.npy holds latents of shape .* use a new run directory"):
        encode_cohort(gen.ae, gen.seg_ae, gen.cfg, data, tmp_path / "seg", gen.device)
    np.testing.assert_array_equal(load_latents(tmp_path / "seg"), seg)
