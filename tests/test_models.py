"""Generator building blocks on small real inputs: presets, quantisation, losses, model files."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from vctcore.models.autoencoders import SegAE, StackedImageAE, build_vq_level, hu_to_unit, snap, unit_to_hu
from vctcore.models.checkpoint import CheckpointError, load_module, load_state, save_module, save_state
from vctcore.models.conditioning import attribute_bins, drop_conditions
from vctcore.models.config import GeneratorConfig, VQLevel, load_preset
from vctcore.models.diffusion import LatentDiffusion
from vctcore.models.losses import multi_window_l1


def test_presets_load_and_divide_the_grid():
    cpu, paper = load_preset("cpu"), load_preset("paper")
    assert cpu.latent_shape == (32, 24, 68) and cpu.image_ae.factor == 4
    assert paper.image_ae.factor == 16 and paper.precision == "bf16"
    with pytest.raises(ValueError, match="known presets: .*cpu"):
        load_preset("nonesuch")
    bad = cpu.to_dict()
    bad["grid_shape"] = [100, 96, 272]
    with pytest.raises(ValueError, match="multiple of 16"):
        GeneratorConfig.from_dict(bad)


def test_patches_must_pass_through_the_autoencoders():
    # the paper preset once had an 80 x 80 x 24 post patch: its 16x image AE gave back 16 slices and the
    # post stage's loss failed on the first GPU run; such presets are refused when they load
    bad = load_preset("paper").to_dict()
    bad["schedules"]["post"]["patch"] = [80, 80, 24]
    with pytest.raises(ValueError, match=r"schedules.post.patch \(80, 80, 24\) must be a multiple of 16"):
        GeneratorConfig.from_dict(bad)
    bad = load_preset("cpu").to_dict()
    bad["schedules"]["image_ae_2"]["patch"] = [64, 64, 66]
    with pytest.raises(ValueError, match="schedules.image_ae_2.patch .* multiple of 4"):
        GeneratorConfig.from_dict(bad)


def test_config_round_trips_through_json_dict():
    cfg = load_preset("cpu")
    assert GeneratorConfig.from_dict(cfg.to_dict()) == cfg


def test_patch_packing_keeps_the_layout_the_shipped_networks_were_trained_with():
    """The diffusion's patches and the packed segmentation latent use MONAI's pixel (un)shuffle; the
    shipped diffusion was trained with channel c * p^3 + (i * p + j) * p + k holding the voxel (i, j, k)
    of each p^3 block, so a MONAI change of that layout must fail here."""
    from monai.networks.utils import pixelshuffle, pixelunshuffle

    z = torch.randn(2, 3, 8, 6, 4)
    y = pixelunshuffle(z, 3, 2)
    assert y.shape == (2, 24, 4, 3, 2)
    assert torch.equal(pixelshuffle(y, 3, 2), z)
    for c, i, j, k in [(0, 0, 0, 0), (1, 1, 0, 1), (2, 1, 1, 0), (2, 0, 1, 1)]:
        assert torch.equal(y[:, c * 8 + (i * 2 + j) * 2 + k], z[:, c, i::2, j::2, k::2])


def test_packed_segmentation_latent_shares_the_image_latent_grid():
    """seg_ae.pack = 2: a 2x segmentation level whose latent joins the 4x image latent as 8x the channels;
    decode(encode(y)) is the level's own round trip, unpacked losslessly."""
    from vctcore.models.autoencoders import one_hot
    from vctcore.models.config import SegAEConfig

    torch.manual_seed(0)
    cfg = SegAEConfig(VQLevel(in_channels=17, channels=(8,), num_res_layers=1, embedding_dim=2, num_embeddings=16), pack=2)
    assert cfg.factor == 2 and cfg.latent_channels == 16
    ae = SegAE(cfg).eval()
    y = one_hot(torch.randint(0, 17, (1, 16, 16, 8)))
    with torch.no_grad():
        z = ae.encode(y)
        assert z.shape == (1, 16, 4, 4, 2)
        fine = ae.vq.quantize(ae.vq.encode(y))[0]
        assert torch.allclose(ae.codes(y), fine, atol=1e-6) and torch.equal(ae.unpack(z), ae.codes(y))
        assert torch.allclose(ae.unpack(z), fine, atol=1e-6) and torch.equal(ae.pack(ae.unpack(z)), z)
        assert torch.allclose(ae.decode(z), ae.vq.decode(fine), atol=1e-6)
        assert ae.decode(z).shape == (1, 17, 16, 16, 8)
    with pytest.raises(ValueError, match="seg_ae.pack must be a power of 2"):
        SegAEConfig(cfg.level, pack=3)


def test_config_refuses_latents_on_different_grids():
    d = load_preset("cpu").to_dict()
    d["seg_ae"]["pack"] = 2  # a 4x level packed by 2 would be an 8x grid against the image's 4x
    with pytest.raises(ValueError, match="downsamples by 4 and packs by 2, image autoencoder by 4"):
        GeneratorConfig.from_dict(d)
    d["seg_ae"]["level"]["channels"] = [16]
    cfg = GeneratorConfig.from_dict(d)
    assert cfg.latent_channels == 4 + 4 * 8 and cfg.latent_shape == (32, 24, 68)
    d["seg_ae"]["colour"] = 1
    with pytest.raises(ValueError, match="unknown field"):
        GeneratorConfig.from_dict(d)


@pytest.mark.parametrize("kd_tree_max_dim", [8, 0], ids=["kd-tree", "distance-matrix"])
def test_snap_matches_monai_quantizer(kd_tree_max_dim, monkeypatch):
    import vctcore.models.autoencoders as autoencoders

    monkeypatch.setattr(autoencoders, "KD_TREE_MAX_DIM", kd_tree_max_dim)
    # seeded: an unseeded draw can land on a near-tie that the two summation orders round differently
    torch.manual_seed(0)
    vq = build_vq_level(VQLevel(in_channels=1, channels=(8,), num_res_layers=1, embedding_dim=4, num_embeddings=32)).eval()
    z = torch.randn(2, 4, 6, 5, 7)
    expected, _ = vq.quantize(z)
    assert torch.allclose(snap(vq, z, chunk=17), expected)


def test_snap_finds_the_exact_nearest_code_of_a_large_two_channel_latent():
    """The KD-tree path against a float64 brute force, on a 2-channel latent the size of the 2x segmentation
    latent's (the search there took 0.74 s as a distance matrix; it must stay exact while faster)."""
    torch.manual_seed(1)
    vq = build_vq_level(VQLevel(in_channels=1, channels=(8,), num_res_layers=1, embedding_dim=2, num_embeddings=512)).eval()
    emb = vq.quantizer.quantizer.embedding.weight.detach().double()
    z = torch.randn(1, 2, 64, 48, 17)
    flat = z.permute(0, 2, 3, 4, 1).reshape(-1, 2).double()
    nearest = emb[torch.cdist(flat, emb).argmin(1)]
    got = snap(vq, z).permute(0, 2, 3, 4, 1).reshape(-1, 2).double()
    assert torch.allclose(got, nearest.float().double())


def test_hu_units_round_trip_and_clip():
    hu = torch.tensor([-3000.0, -1000.0, 0.0, 40.0, 5000.0])
    assert torch.allclose(unit_to_hu(hu_to_unit(hu)), torch.tensor([-1024.0, -1000.0, 0.0, 40.0, 3071.0]))


def test_multi_window_l1_weights_by_target_window():
    cfg = load_preset("cpu").image_ae  # weights soft 3, hard 1, other 1; soft [-200, 300), hard [300, 3071)
    target_hu = torch.tensor([0.0, 1000.0, -1000.0])
    target = hu_to_unit(target_hu)
    pred = target + 0.1
    got = multi_window_l1(pred, target, target_hu, cfg)
    assert got.item() == pytest.approx((3 * 0.1 + 1 * 0.1 + 1 * 0.1) / 3)


def test_bone_interior_is_the_bone_mask_eroded_by_one_voxel():
    from vctcore.labels import MERGED_CLASS_IDS
    from vctcore.models.losses import bone_interior

    seg = torch.zeros(1, 12, 12, 12, dtype=torch.long)
    seg[0, 2:7, 2:7, 2:7] = MERGED_CLASS_IDS["bone"]  # a 5^3 cube: interior 3^3
    seg[0, 4, 4, 4] = MERGED_CLASS_IDS["appendicular_bones"]  # the other bone class counts as bone
    seg[0, 8:12, 8:12, 8:12] = MERGED_CLASS_IDS["liver"]  # not bone
    inner = bone_interior(seg)
    assert inner.shape == (1, 1, 12, 12, 12) and inner.dtype == torch.bool
    assert inner.sum().item() == 27 and inner[0, 0, 3:6, 3:6, 3:6].all()
    edge = torch.zeros(1, 12, 12, 12, dtype=torch.long)
    edge[0, :3] = MERGED_CLASS_IDS["bone"]  # a bone slab cut by the patch edge keeps its interior there
    assert bone_interior(edge)[0, 0, :2, 1:-1, 1:-1].all() and not bone_interior(edge)[0, 0, 2].any()


def test_masked_l1_averages_over_the_mask_only():
    from vctcore.models.losses import masked_l1

    pred, target = torch.tensor([1.0, 2.0, 3.0, 10.0]), torch.tensor([0.0, 0.0, 0.0, 0.0])
    assert masked_l1(pred, target, torch.tensor([True, True, False, False])).item() == pytest.approx(1.5)
    empty = masked_l1(pred.requires_grad_(), target, torch.zeros(4, dtype=torch.bool))
    assert empty.item() == 0.0
    empty.backward()  # still a graph: a batch without bone trains as before
    assert torch.equal(pred.grad, torch.zeros(4))


def test_post_config_refuses_a_negative_core_weight():
    from vctcore.models.config import PostConfig

    with pytest.raises(ValueError, match="core_weight"):
        PostConfig(core_weight=-1.0)


def test_condition_bins_and_dropout():
    import pandas as pd

    table = pd.DataFrame({"sex": ["F", "M", None], "age_years": [25, 61, 40]})
    bins = attribute_bins(table, ("sex", "age_years", "weight_kg"))
    assert bins.shape == (3, 3)
    assert bins[2, 0] == 0 and bins[0, 0] != bins[1, 0]
    assert (bins[:, 2] == 0).all()  # no weight column -> "none"
    b = torch.from_numpy(bins)
    assert torch.equal(drop_conditions(b, 1.0, 0.0), torch.zeros_like(b))
    assert torch.equal(drop_conditions(b, 0.0, 0.0), b)


def test_autoencoders_keep_shapes():
    cfg = load_preset("cpu")
    ae, seg = StackedImageAE(cfg.image_ae).eval(), SegAE(cfg.seg_ae).eval()
    with torch.no_grad():
        z = ae.encode(torch.zeros(1, 1, 32, 32, 32))
        assert z.shape == (1, 4, 8, 8, 8)
        assert ae.decode(z).shape == (1, 1, 32, 32, 32)
        zs = seg.encode(torch.zeros(1, 17, 32, 32, 32))
        assert seg.decode(zs).shape == (1, 17, 32, 32, 32)


def test_diffusion_sampling_is_deterministic_given_noise():
    cfg = load_preset("cpu").diffusion
    dm = LatentDiffusion(cfg, 8).eval()
    noise = torch.randn(1, 8, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    bins = torch.tensor([[1, 2, 3, 4]])
    a = dm.sample(bins, noise, steps=2)
    b = dm.sample(bins, noise, steps=2)
    assert torch.equal(a, b) and a.shape == noise.shape


def _diffusion_with_every_weight_set(cfg) -> LatentDiffusion:
    """A seeded 8-channel LatentDiffusion in eval mode whose output depends on its input: MONAI
    zero-initialises the U-Net's output layer, so every weight gets a small random value."""
    torch.manual_seed(0)
    dm = LatentDiffusion(cfg, 8).eval()
    with torch.no_grad():
        for p in dm.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return dm


def test_fused_attention_is_the_same_function_with_the_same_weights():
    """Generation on CPU runs the U-Net's attention through torch's fused kernel (MONAI's
    use_flash_attention): same state dict, same outputs up to float rounding."""
    from vctcore.generator import Generator

    cfg = load_preset("cpu").diffusion
    plain = _diffusion_with_every_weight_set(cfg)
    fused = LatentDiffusion(cfg, 8, fused_attention=True).eval()
    fused.load_state_dict(plain.state_dict(), strict=True)
    z, t, bins = torch.randn(2, 8, 8, 8, 8), torch.tensor([900, 10]), torch.tensor([[1, 2, 3, 4], [0, 0, 0, 0]])
    with torch.no_grad():
        a, b = plain(z, t, bins), fused(z, t, bins)
    assert a.abs().max() > 0.01 and torch.allclose(a, b, atol=1e-5)
    flags = [m.use_flash_attention for m in Generator.from_pretrained(device="cpu").dm.modules() if hasattr(m, "use_flash_attention")]
    assert flags and all(flags)


def test_guidance_interval_guides_only_inside_it():
    from dataclasses import replace

    cfg = load_preset("cpu").diffusion
    dm = _diffusion_with_every_weight_set(cfg)
    noise = torch.randn(1, 8, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    bins = torch.tensor([[1, 2, 3, 4]])
    assert not torch.allclose(dm.sample(bins, noise, steps=4, guidance_scale=2.0),
                              dm.sample(bins, noise, steps=4, guidance_scale=1.0), atol=1e-4)

    def sample(interval, g=2.0):
        dm.cfg = replace(cfg, guidance_interval=interval)
        return dm.sample(bins, noise, steps=4, guidance_scale=g, sampler="dpm++")

    everywhere = sample(None)
    assert torch.allclose(sample((0.0, 1e9)), everywhere, atol=1e-5)  # covers every step's sigma
    unguided = sample(None, g=1.0)
    assert torch.allclose(sample((1e6, 1e9)), unguided, atol=1e-5)  # covers none: the conditional model alone
    part = sample((0.5, 20.0))  # some steps guided: between the two, equal to neither
    assert not torch.allclose(part, everywhere, atol=1e-4) and not torch.allclose(part, unguided, atol=1e-4)
    with pytest.raises(ValueError, match="guidance_interval"):
        replace(cfg, guidance_interval=(2.0, 1.0))

@pytest.fixture()
def small_module():
    return build_vq_level(VQLevel(in_channels=1, channels=(4,), num_res_layers=1, embedding_dim=2, num_embeddings=8))


def test_model_file_round_trip(tmp_path, small_module):
    path = save_module(small_module, tmp_path / "m.safetensors", kind="vq_level", config={"a": 1})
    other = build_vq_level(VQLevel(in_channels=1, channels=(4,), num_res_layers=1, embedding_dim=2, num_embeddings=8))
    assert load_module(other, path, kind="vq_level") == {"a": 1}
    for k, v in small_module.state_dict().items():
        assert torch.equal(v, other.state_dict()[k])


def test_model_file_errors_name_the_file(tmp_path, small_module):
    path = save_module(small_module, tmp_path / "m.safetensors", kind="vq_level", config={})
    with pytest.raises(CheckpointError, match="m.safetensors.*holds a 'vq_level' model, expected 'seg_ae'"):
        load_module(small_module, path, kind="seg_ae")
    wrong = build_vq_level(VQLevel(in_channels=1, channels=(6,), num_res_layers=1, embedding_dim=2, num_embeddings=8))
    with pytest.raises(CheckpointError, match="do not fit the vq_level architecture"):
        load_module(wrong, path, kind="vq_level")
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="t.safetensors: corrupt or truncated"):
        load_module(small_module, truncated, kind="vq_level")
    pickled = tmp_path / "p.safetensors"
    pickled.write_bytes(pickle.dumps({"weights": np.zeros(3)}))
    with pytest.raises(CheckpointError, match="p.safetensors: not a safetensors file"):
        load_module(small_module, pickled, kind="vq_level")
    torch_file = tmp_path / "model.pt"
    torch.save(small_module.state_dict(), torch_file)
    with pytest.raises(CheckpointError, match="model.pt: not a safetensors file"):
        load_module(small_module, torch_file, kind="vq_level")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_module(small_module, tmp_path / "nope.safetensors", kind="vq_level")


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_training_state_refuses_arbitrary_pickles(tmp_path):
    good = tmp_path / "s.pt"
    save_state({"step": 3, "w": torch.ones(2)}, good)
    assert load_state(good)["step"] == 3
    evil = tmp_path / "evil.pt"
    torch.save({"x": _Evil()}, evil)
    with pytest.raises(CheckpointError, match="evil.pt: unreadable training state"):
        load_state(evil)
