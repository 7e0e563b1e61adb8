"""The independent segmenter: network shapes, a few training steps on a tiny cohort, save/load, resume."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from generator_fixtures import flip_byte
from vctcore.checkers.segmenter import (N_CLASSES, SegmenterConfig, SegUNet, labels_to_work_grid, load_segmenter,
                                        load_unet, to_work_grid, work_shape)
from vctcore.checkers.segmenter_train import SegTrainConfig, holdout_dice, train_segmenter
from vctcore.cohort import CohortWriter
from vctcore.fidelity.realism import slice_features
from vctcore.labels import MERGED_CLASSES
from vctcore.models.checkpoint import CheckpointError
from vctcore.volume import CTVolume, LabelMap, make_affine

SMALL = SegmenterConfig(channels=(4, 8, 16))
TRAIN = SegTrainConfig(steps=3, batch_size=1, checkpoint_every=1, max_shift=1, patch_z=16)


def _toy_patient(rng: np.random.Generator, spacing=(6.0, 6.0, 8.0), shape=(24, 24, 32)) -> tuple[CTVolume, LabelMap]:
    hu = np.full(shape, -1000.0, np.float32)
    seg = np.zeros(shape, np.uint8)
    hu[3:21, 4:20, 2:30] = 40.0
    o = rng.integers(0, 3, 3)
    seg[6 + o[0]:14 + o[0], 6:14, 8 + o[2]:16 + o[2]] = 4  # liver
    hu[seg == 4] = 60.0
    seg[10:13, 14:17, 4:28] = 1  # spine
    hu[seg == 1] = 400.0
    hu += rng.normal(0, 10, shape).astype(np.float32)
    affine = make_affine(spacing)
    return CTVolume(hu, affine), LabelMap(seg, affine, {k: v for k, v in MERGED_CLASSES.items() if k})


@pytest.fixture(scope="module")
def toy_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("segcohort")
    writer = CohortWriter(root, {"maker": "tests"})
    rng = np.random.default_rng(0)
    for i in range(3):
        ct, seg = _toy_patient(rng)
        writer.add(f"P{i:04d}", ct=ct, seg=seg)
    writer.write_attributes(pd.DataFrame({"id": [f"P{i:04d}" for i in range(3)], "sex": ["F", "M", "F"]}))
    return root


def test_unet_shapes_and_single_slice_encoding():
    net = SegUNet(SMALL).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 1, 16, 24, 32)).shape == (1, N_CLASSES, 16, 24, 32)
        feats = net.encode(torch.zeros(5, 1, 16, 24, 1))  # five 2D slices, one voxel thick
    assert [f.shape[1] for f in feats] == [4, 8, 16] and all(f.shape[-1] == 1 for f in feats)


def test_work_grid_resampling_is_a_block_mean():
    cfg = SegmenterConfig()
    hu = np.arange(4 * 4 * 4, dtype=np.float32).reshape(4, 4, 4)
    assert work_shape((128, 96, 272), (6.0, 6.0, 8.0), cfg) == (64, 48, 136)
    down = to_work_grid(hu, (6.0, 6.0, 8.0), cfg)[0, 0].numpy()
    assert down.shape == (2, 2, 2)
    assert down[0, 0, 0] == pytest.approx(hu[:2, :2, :2].mean())
    lab = np.zeros((4, 4, 4), np.uint8)
    lab[:2, :2, :2] = 3
    lab[0, 0, 0] = 5  # a minority voxel in a block loses to the majority
    assert labels_to_work_grid(lab, (2, 2, 2))[0, 0, 0] == 3


def test_training_saves_loads_and_resumes(toy_cohort, tmp_path):
    out = tmp_path / "seg"
    first = train_segmenter(toy_cohort, out, cfg=SMALL, train=TRAIN, max_minutes=1e-6)
    assert first.step == 1 and not first.finished
    second = train_segmenter(toy_cohort, out, cfg=SMALL, train=TRAIN)
    assert second.step == 3 and second.finished
    log = pd.read_csv(out / "run" / "logs" / "segmenter.csv")
    assert list(log["step"]) == [1, 2, 3] and np.isfinite(log["dice_ce"]).all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "segmenter" and manifest["training"]["steps"] == 3
    assert manifest["training"]["n_patients"] == 3 and len(manifest["sha256"]) == 64
    seg = load_unet(out)
    assert seg.kind == "unet" and seg.cfg == SMALL
    ct, truth = _toy_patient(np.random.default_rng(9))
    pred = seg.segment(ct)
    assert pred.shape == ct.shape and pred.data.max() < N_CLASSES
    assert np.array_equal(pred.affine, ct.affine)
    feats = slice_features(seg, ct, per_plane=4)
    assert {k: v.shape for k, v in feats.items()} == {p: (4, 4 + 8 + 16) for p in ("axial", "coronal", "sagittal")}
    dice = holdout_dice(seg, toy_cohort, n=2)
    assert dice["n"] == 2 and 0.0 <= dice["per_class"]["bone"] <= 1.0
    assert load_segmenter("unet", out).sha256 == manifest["sha256"]


def test_fine_tuning_starts_from_the_given_segmenter(toy_cohort, tmp_path):
    """``init``: a new run starts from another segmenter's weights (lr 0 keeps them exactly); the manifest
    names the start; a different architecture is refused by name."""
    from safetensors.torch import load_file

    base = tmp_path / "base"
    train_segmenter(toy_cohort, base, cfg=SMALL, train=SegTrainConfig(steps=2, batch_size=1, patch_z=16))
    frozen = SegTrainConfig(steps=1, batch_size=1, patch_z=16, lr=0.0, init=str(base), seed=5)
    tuned = train_segmenter(toy_cohort, tmp_path / "tuned", cfg=SMALL, train=frozen).out
    a, b = load_file(str(base / "segmenter.safetensors")), load_file(str(tuned / "segmenter.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    fresh = train_segmenter(toy_cohort, tmp_path / "fresh", cfg=SMALL,
                            train=SegTrainConfig(steps=1, batch_size=1, patch_z=16, lr=0.0, seed=5)).out
    c = load_file(str(fresh / "segmenter.safetensors"))
    assert not all(torch.equal(a[k], c[k]) for k in a)
    manifest = json.loads((tuned / "manifest.json").read_text())
    assert manifest["training"]["init"]["sha256"] == json.loads((base / "manifest.json").read_text())["sha256"]
    assert manifest["training"]["batch_dice"] is True
    with pytest.raises(ValueError, match="differs from the one asked for"):
        train_segmenter(toy_cohort, tmp_path / "other", cfg=SegmenterConfig(channels=(4, 8)), train=frozen)


def test_broken_or_missing_segmenter_is_named(toy_cohort, tmp_path):
    with pytest.raises(CheckpointError, match="no independent segmenter"):
        load_unet(tmp_path / "nothing")
    out = tmp_path / "seg"
    train_segmenter(toy_cohort, out, cfg=SMALL, train=SegTrainConfig(steps=1, batch_size=1, patch_z=16))
    flip_byte(out / "segmenter.safetensors")
    with pytest.raises(CheckpointError, match="sha256 differs"):
        load_unet(out)
    with pytest.raises(ValueError, match="auto, unet or totalsegmentator"):
        load_segmenter("nnunet")


def test_default_architecture_fits_the_shipping_limit(tmp_path):
    from vctcore.checkers.segmenter import save_segmenter

    path = save_segmenter(SegUNet(SegmenterConfig()), tmp_path, {"training": {}})
    assert path.stat().st_size < 20 * 2**20


def test_training_crops_cover_the_top_and_bottom_slices():
    """Brain and feet sit in the first and last slices: a crop must include them often, not once in Z - patch_z + 1."""
    from vctcore.checkers.segmenter_train import augment

    torch.manual_seed(0)
    z = 40
    lab = torch.arange(z).view(1, 1, z).expand(4, 4, z).clone()  # label = slice index
    hu = torch.zeros(1, 4, 4, z)
    top = bottom = 0
    for _ in range(1000):
        _, crop = augment(hu, lab, SegmenterConfig(), max_shift=0, patch_z=10)
        top += int((crop == z - 1).any())
        bottom += int((crop == 0).any())
    # a centre within half a crop of either end: (10 / 2) / 40 = 12.5 %; a uniform start gave 1 / 31 = 3 %
    assert top > 1000 * 0.09 and bottom > 1000 * 0.09


# ---------------------------------------------------------------- cascade refiner
REFINER = SegmenterConfig(channels=(4, 8), spacing_mm=(6.0, 6.0, 8.0), in_channels=1 + N_CLASSES)


def test_refine_input_and_argmax():
    from vctcore.checkers.segmenter import argmax_classes, refine_input

    x = torch.zeros(1, 1, 8, 6, 4)
    probs = torch.zeros(1, N_CLASSES, 4, 3, 2)
    probs[:, 0] = 1.0
    inp = refine_input(x, probs)
    assert inp.shape == (1, 1 + N_CLASSES, 8, 6, 4)
    assert torch.all(inp[:, 1] == 1.0) and torch.all(inp[:, 2:] == -1.0)  # probabilities 1 / 0 -> +1 / -1
    logits = torch.randn(N_CLASSES, 9, 7, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(argmax_classes(logits), logits.argmax(0).to(torch.uint8))


def test_crops_centre_on_the_asked_voxel_and_stay_inside():
    from vctcore.checkers.segmenter_refine import crop_start

    gen = torch.Generator().manual_seed(0)
    assert crop_start((40, 30, 20), (16, 16, 16), (20, 15, 10), gen) == (12, 7, 2)
    assert crop_start((40, 30, 20), (16, 16, 16), (1, 29, 10), gen) == (0, 14, 2)  # clamped inside
    assert crop_start((10, 30, 20), (16, 16, 16), None, gen)[0] == 0  # larger than the volume: from 0
    for _ in range(50):
        s = crop_start((40, 30, 20), (16, 16, 16), None, gen)
        assert all(0 <= a <= n - 16 for a, n in zip(s, (40, 30, 20)))


def test_refiner_trains_resumes_loads_and_is_checked(toy_cohort, tmp_path):
    """A cascade: the coarse weights are kept unchanged, the refiner is written beside them with its
    sha256; a resumed run finishes; loading checks both files; bad set-ups are refused by name."""
    from safetensors.torch import load_file

    from vctcore.checkers.segmenter_refine import RefineTrainConfig, train_refiner

    coarse = tmp_path / "coarse"
    train_segmenter(toy_cohort, coarse, cfg=SMALL, train=SegTrainConfig(steps=1, batch_size=1, patch_z=16))
    cfg = RefineTrainConfig(steps=3, batch_size=2, checkpoint_every=1, patch=(16, 16, 16))
    out = tmp_path / "cascade"
    first = train_refiner(toy_cohort, coarse, out, cfg=REFINER, train=cfg, max_minutes=1e-6)
    assert first.step == 1 and not first.finished
    second = train_refiner(toy_cohort, coarse, out, cfg=REFINER, train=cfg)
    assert second.step == 3 and second.finished
    a, b = load_file(str(coarse / "segmenter.safetensors")), load_file(str(out / "segmenter.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["sha256"] == json.loads((coarse / "manifest.json").read_text())["sha256"]
    assert len(manifest["refiner"]["sha256"]) == 64 and manifest["refiner"]["training"]["steps"] == 3
    assert manifest["refiner"]["training"]["coarse"]["sha256"] == manifest["sha256"]
    seg = load_unet(out)
    assert seg.refiner is not None and seg.refiner.cfg == REFINER
    assert seg.digests == {"segmenter": manifest["sha256"], "refiner": manifest["refiner"]["sha256"]}
    ct, _ = _toy_patient(np.random.default_rng(9))
    assert seg.logits(np.asarray(ct.data), ct.spacing_mm).shape == (N_CLASSES, *ct.shape)  # the refiner's grid
    pred = seg.segment(ct)
    assert pred.shape == ct.shape and pred.data.max() < N_CLASSES
    # segment() refines the body's bounding box plus a margin, clamped to the volume
    body = np.zeros((40, 40, 60), bool)
    body[10:20, 5:30, 30:59] = True
    big = CTVolume(np.full(body.shape, -1000.0, np.float32), ct.affine)
    assert seg._refine_box(big, body) == (slice(2, 28), slice(0, 38), slice(22, 60))
    assert seg._refine_box(big, np.zeros_like(body)) is None
    coarse_grid = CTVolume(big.data, make_affine((12.0, 12.0, 16.0)))  # not the refiner's grid: refine it all
    assert seg._refine_box(coarse_grid, body) is None
    assert load_unet(coarse).digests["refiner"] is None

    with pytest.raises(ValueError, match="its own directory"):
        train_refiner(toy_cohort, coarse, coarse, cfg=REFINER, train=cfg)
    with pytest.raises(ValueError, match="without one"):
        train_refiner(toy_cohort, out, tmp_path / "again", cfg=REFINER, train=cfg)
    with pytest.raises(ValueError, match="in_channels must be"):
        train_refiner(toy_cohort, coarse, tmp_path / "bad", cfg=SMALL, train=cfg)
    flip_byte(out / "refiner.safetensors")
    with pytest.raises(CheckpointError, match="refiner.safetensors: sha256 differs"):
        load_unet(out)
    (out / "refiner.safetensors").unlink()
    with pytest.raises(CheckpointError, match="refiner.safetensors: missing"):
        load_unet(out)


def test_refiner_cli_refuses_bad_arguments_in_one_line(toy_cohort, tmp_path):
    import subprocess
    import sys

    def vct(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "vctcore.cli", "train-segmenter-refiner", *args],
                              capture_output=True, text=True, timeout=120)

    res = vct("--cohort", str(toy_cohort), "--segmenter", str(tmp_path / "none"), "--out", str(tmp_path / "o"),
              "--patch", "64,64")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "--patch must be three sizes" in res.stderr
    res = vct("--cohort", str(toy_cohort), "--segmenter", str(tmp_path / "none"), "--out", str(tmp_path / "o"),
              "--channels", "8,x")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "--channels must be positive" in res.stderr
    res = vct("--cohort", str(toy_cohort), "--segmenter", str(tmp_path / "none"), "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "no independent segmenter" in res.stderr


def test_shipped_segmenter_segments_fresh_phantoms():
    """The shipped cascade on two phantoms it has not seen (measured 2026-11-26: mean Dice 0.81 / 0.85,
    kidney 0.54 / 0.36; the coarse network alone never finds a kidney). Prostate stays unfound."""
    from vctcore.overlap import dice_per_class, mean_dice
    from vctcore.phantom.builder import build_phantom

    seg = load_unet()
    assert seg.refiner is not None and seg.manifest["holdout_dice"]["mean"] >= 0.7
    male = {"sex": "M", "age_years": 52, "height_cm": 176, "weight_kg": 90, "bfp_pct": 27, "mmp_pct": 36,
            "bone_density_hu": 160}
    female = {"sex": "F", "age_years": 41, "height_cm": 166, "weight_kg": 62, "bfp_pct": 33, "mmp_pct": 30,
              "bone_density_hu": 190}
    for attrs, seed in ((male, 7), (female, 8)):
        ph = build_phantom(attrs, seed=seed)
        dice = dice_per_class(seg.segment(ph.ct).data, ph.seg.data, range(1, N_CLASSES))
        assert mean_dice(dice) >= 0.75, dice
        large = ("bone", "liver", "lung_upper_lobes", "lung_lower_lobes", "heart", "aorta", "brain",
                 "appendicular_bones", "gluteus_muscles")
        assert all(dice[k] >= 0.75 for k in large), dice
        assert dice["kidney"] >= 0.2, dice
