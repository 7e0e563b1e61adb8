"""Train a tiny real generator end to end (all stages, resumed once), then load and sample it."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from generator_fixtures import ROWS, TINY_GRID, flip_byte
from vctcore.generator import Generator
from vctcore.models.checkpoint import CheckpointError, load_state
from vctcore.train.stages import STAGES


@pytest.fixture()
def trained(tiny_generator):
    return tiny_generator


def test_training_resumes_where_it_stopped(trained):
    first, second = trained["first"], trained["second"]
    assert first.generator_dir is None and not first.results[0].finished
    assert first.results[0].stage == "image_ae_1" and first.results[0].step == 1
    assert [r.stage for r in second.results] == list(STAGES)
    assert all(r.finished for r in second.results)
    log = pd.read_csv(trained["run"] / "logs" / "image_ae_1.csv")
    assert list(log["step"]) == list(range(1, 7))  # step 1 from the first call, 2..6 from the second
    assert {"mw_l1", "vq", "adv_g", "adv_d"} <= set(log.columns)
    # every stage's saved state loads back without unpickling arbitrary objects (weights_only)
    for stage in ("image_ae_1", "image_ae_2", "seg_ae", "seg_decoder", "diffusion", "post"):
        assert load_state(trained["run"] / "state" / f"{stage}.pt")["step"] > 0


def test_seg_decoder_stage_moves_only_the_decoder(trained):
    """The latents were encoded with seg_ae's encoder and codebook: fine-tuning must leave them as they were."""
    from safetensors.torch import load_file

    before = load_file(str(trained["run"] / "models" / "seg_ae.safetensors"))
    after = load_file(str(trained["run"] / "models" / "seg_decoder.safetensors"))
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("vq.decoder.") for k in changed)
    exported = load_file(str(trained["generator"] / "seg_ae.safetensors"))
    assert all(torch.equal(exported[k], after[k]) for k in after)


def test_from_run_reuses_unchanged_stages_and_trains_the_rest(trained, tmp_path):
    """A wider diffusion U-Net and a gated post-processor in a new run: the autoencoders and latents
    come from the old run untouched; only diffusion and post train; a rerun resumes, not re-branches."""
    import yaml

    from vctcore.train.run import train

    preset = yaml.safe_load(trained["preset"].read_text())
    preset["diffusion"]["channels"] = [32, 32]
    preset["post"]["residual_gate"] = True
    new_preset = tmp_path / "wider.yaml"
    new_preset.write_text(yaml.safe_dump(preset))
    new_run = tmp_path / "run"
    report = train(trained["cohort"], new_run, preset=new_preset, seed=3, from_run=trained["run"])
    assert [r.stage for r in report.results] == ["diffusion", "post"]
    brought = json.loads((new_run / "branched_from.json").read_text())["stages"]
    assert brought == ["image_ae_1", "image_ae_2", "seg_ae", "latents", "seg_decoder"]
    old, new = trained["run"] / "models", new_run / "models"
    assert (old / "seg_ae.safetensors").read_bytes() == (new / "seg_ae.safetensors").read_bytes()
    gen = Generator.from_pretrained(report.generator_dir, device="cpu")
    assert gen.post.gate is not None
    # resuming with the same command trains nothing more
    again = train(trained["cohort"], new_run, preset=new_preset, seed=3, from_run=trained["run"])
    assert again.results == [] and again.generator_dir is not None
    with pytest.raises(ValueError, match="another cohort or seed"):
        train(trained["cohort"], tmp_path / "other", preset=new_preset, seed=4, from_run=trained["run"])


def test_a_run_starts_from_a_generator_directory_and_resumes_from_a_copy_without_its_files(trained, tmp_path):
    """--from-run GENERATOR_DIR (a shipped generator, not a run): its image AE comes over finished, on any
    seed; a finer segmentation latent trains anew and --warm-start diffusion grafts the generator's U-Net.
    A copy of the run without the generator's files (as committed) resumes: they come back, nothing retrains."""
    import yaml

    from vctcore.models.checkpoint import tensors_sha256
    from vctcore.train.from_generator import FOLDER
    from vctcore.train.run import train
    from vctcore.train.warm_start import shared_latent_channels

    preset = yaml.safe_load(trained["preset"].read_text())
    preset["seg_ae"] = {"level": {**preset["seg_ae"]["level"], "channels": [8]}, "pack": 2}
    new_preset = tmp_path / "seg2x.yaml"
    new_preset.write_text(yaml.safe_dump(preset))
    seen = {}
    run = tmp_path / "run"
    report = train(trained["cohort"], run, preset=new_preset, seed=5, from_run=trained["generator"],
                   warm_start=["diffusion"], progress=lambda stage, i, n, vals: seen.setdefault(stage, vals))
    assert [r.stage for r in report.results] == ["seg_ae", "latents", "seg_decoder", "diffusion", "post"]
    marker = json.loads((run / "branched_from.json").read_text())
    assert marker["stages"] == ["image_ae_1", "image_ae_2"] and "generator" in marker
    assert seen["diffusion"] == {"warm_fresh_tensors": 0.0, "warm_grafted_tensors": 3.0}
    gen = Generator.from_pretrained(report.generator_dir, device="cpu")
    ref = Generator.from_pretrained(trained["generator"], device="cpu")
    training = gen.manifest["training"]  # provenance: the source generator and what the graft kept
    assert training["branched_from"]["generator"]["files"] == ref.checkpoint_sha256
    assert training["branched_from"]["stages"] == ["image_ae_1", "image_ae_2"]
    assert training["warm_start"]["diffusion"]["latent_channel_pairs"] == [[0, 0], [1, 1]]
    assert len(training["warm_start"]["diffusion"]["grafted_tensors"]) == 3
    for mine, theirs in zip(gen.ae.parameters(), ref.ae.parameters()):
        assert torch.equal(mine, theirs)
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("cache", FOLDER, "image_ae_*", "generator"))
    again = train(trained["cohort"], copy, preset=new_preset, seed=5, from_run=trained["generator"],
                  warm_start=["diffusion"])
    assert again.results == [] and (copy / "models" / "image_ae_1.safetensors").exists()
    assert tensors_sha256(copy / "generator" / "image_ae.safetensors") == \
        tensors_sha256(report.generator_dir / "image_ae.safetensors")
    assert shared_latent_channels(copy / FOLDER, copy) == [(0, 0), (1, 1)]  # the graft's pairs hold in the copy
    with pytest.raises(ValueError, match="already started without"):
        train(trained["cohort"], copy, preset=new_preset, seed=5, from_run=trained["run"])


def test_a_run_resumes_on_its_cohort_rebuilt_elsewhere_and_not_on_a_changed_one(trained, tmp_path):
    """A run (say, committed from another machine) resumes on the same cohort written again from the same
    seeds (new files, new times, the same bytes); a cohort with one changed attribute is refused."""
    from generator_fixtures import write_tiny_cohort
    from vctcore.train.data import cohort_fingerprint
    from vctcore.train.run import train

    rebuilt = write_tiny_cohort(tmp_path / "rebuilt")
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run, ignore=shutil.ignore_patterns("cache"))
    again = train(rebuilt, run, preset=trained["preset"], seed=3)
    assert again.results == [] and again.generator_dir is not None
    ids = [f"P{i:04d}" for i in range(len(ROWS))]
    table = pd.read_csv(rebuilt / "attributes.csv")
    table.loc[0, "weight_kg"] += 1.0
    table.to_csv(rebuilt / "attributes.csv", index=False)
    assert cohort_fingerprint(rebuilt, ids) != cohort_fingerprint(trained["cohort"], ids)
    shutil.rmtree(run / "cache")
    with pytest.raises(ValueError, match="another cohort or seed"):
        train(rebuilt, run, preset=trained["preset"], seed=3)


def test_a_cohort_file_is_hashed_once_per_process_until_it_changes(tmp_path, monkeypatch):
    """Fingerprinting reads a file's bytes once per process; a rewritten file is read again."""
    import hashlib
    import os

    from vctcore.train import data

    reads = []
    digest = data.sha256_file
    monkeypatch.setattr(data, "sha256_file", lambda path: reads.append(path) or digest(path))
    f = tmp_path / "ct.nii.gz"
    f.write_bytes(b"a" * 100)
    assert data.file_sha256(f) == data.file_sha256(f) == hashlib.sha256(b"a" * 100).hexdigest()
    assert len(reads) == 1
    st = os.stat(f)
    f.write_bytes(b"b" * 100)  # same size; the time moves on
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert data.file_sha256(f) == hashlib.sha256(b"b" * 100).hexdigest() and len(reads) == 2


def test_a_packed_finer_segmentation_latent_trains_from_an_earlier_run(trained, tmp_path):
    """seg_ae.pack = 2 (a 2x segmentation level packed onto the 4x image latent grid): the image AE comes
    from the old run; the segmentation AE, latents, decoder fine-tuning, diffusion and post train anew on
    the wider joint latent, and the generator decodes it to full-resolution segmentations. With
    --warm-start diffusion, the U-Net starts from the old one, its first and last convolutions grafted:
    the image channels (the same image AE) keep the old weights, the new segmentation channels are not read."""
    import yaml
    from safetensors.torch import load_file

    from vctcore.models.checkpoint import load_matching
    from vctcore.models.config import load_preset
    from vctcore.models.diffusion import UNET_IN_CONV, UNET_OUT_CONV, LatentDiffusion
    from vctcore.train.run import train
    from vctcore.train.warm_start import shared_latent_channels

    preset = yaml.safe_load(trained["preset"].read_text())
    preset["seg_ae"] = {"level": {**preset["seg_ae"]["level"], "channels": [8]}, "pack": 2}
    new_preset = tmp_path / "seg2x.yaml"
    new_preset.write_text(yaml.safe_dump(preset))
    seen = {}
    report = train(trained["cohort"], tmp_path / "run", preset=new_preset, seed=3, from_run=trained["run"],
                   warm_start=["diffusion"], progress=lambda stage, i, n, vals: seen.setdefault(stage, vals))
    assert [r.stage for r in report.results] == ["seg_ae", "latents", "seg_decoder", "diffusion", "post"]
    assert seen["diffusion"] == {"warm_fresh_tensors": 0.0, "warm_grafted_tensors": 3.0}
    # the graft itself, before any training step: image latent channels 0, 1 (2 x 8 U-Net channels after
    # the U-Net's 2x space-to-depth) are the old ones, the 16 new segmentation channels are not read
    assert shared_latent_channels(trained["run"], tmp_path / "run") == [(0, 0), (1, 1)]
    cfg = load_preset(new_preset)
    dm = LatentDiffusion(cfg.diffusion, cfg.latent_channels)
    old = load_file(str(trained["run"] / "models" / "diffusion.safetensors"))
    fresh = load_matching(dm, trained["run"] / "models" / "diffusion.safetensors", kind="diffusion")
    convs = [f"{UNET_IN_CONV}.weight", f"{UNET_OUT_CONV}.weight", f"{UNET_OUT_CONV}.bias"]
    assert sorted(fresh) == sorted([*convs, "latent_mean", "latent_std"])  # the statistics: the new run's own
    assert dm.graft_latent_channels(old, [(0, 0), (1, 1)]) == convs
    p3 = cfg.diffusion.patch_size**3
    w_in, w_out = dm.state_dict()[f"{UNET_IN_CONV}.weight"], dm.state_dict()[f"{UNET_OUT_CONV}.weight"]
    assert w_in.shape[1] == cfg.latent_channels * p3 == 18 * p3
    assert torch.equal(w_in[:, :2 * p3], old[f"{UNET_IN_CONV}.weight"][:, :2 * p3])
    assert not w_in[:, 2 * p3:].any()
    assert torch.equal(w_out[:2 * p3], old[f"{UNET_OUT_CONV}.weight"][:2 * p3])
    with pytest.raises(ValueError, match="out of range"):
        dm.graft_latent_channels(old, [(0, 18)])
    gen = Generator.from_pretrained(report.generator_dir, device="cpu")
    assert gen.cfg.latent_channels == 2 + 2 * 8 and gen.dm.latent_std.shape == (18,)
    lat = np.load(tmp_path / "run" / "latents" / "z.npy", mmap_mode="r")
    assert lat.shape[1:] == (18, *gen.cfg.latent_shape)
    (p,) = gen.generate(pd.DataFrame([ROWS[0]]), seed=0, steps=2)
    assert p.ct.shape == p.seg.shape == TINY_GRID.shape and np.isfinite(p.ct.data).all()


def test_a_run_started_before_an_option_existed_still_resumes(trained, tmp_path):
    """run.json written by older code lacks options added since (here the post-processor's): they compare
    at their defaults, so the run resumes instead of being refused as another architecture."""
    from vctcore.train.run import train

    run = tmp_path / "old-run"
    shutil.copytree(trained["run"], run)
    meta = json.loads((run / "run.json").read_text())
    for key in ("seg_input", "window_weights", "latent_noise"):
        del meta["config"]["post"][key]
    (run / "run.json").write_text(json.dumps(meta))
    again = train(trained["cohort"], run, preset=trained["preset"], seed=3)
    assert again.results == [] and again.generator_dir is not None


def test_gated_post_processor_starts_as_the_identity():
    import torch

    from vctcore.models.config import PostConfig
    from vctcore.models.postprocess import PostProcessor

    x = torch.randn(1, 1, 16, 16, 16)
    assert torch.equal(PostProcessor(PostConfig(channels=(4, 8), residual_gate=True))(x), x)
    assert not torch.equal(PostProcessor(PostConfig(channels=(4, 8)))(x), x)


def test_seg_aware_post_processor_trains_alone_and_generates(trained, tmp_path):
    """A post-processor that also reads the decoded segmentation, trained with the multi-window L1:
    a new run brings every other stage (diffusion included) and trains post only; the generator feeds
    it the image plus 17 class probabilities and still returns a (X, Y, Z) HU volume."""
    import yaml

    from vctcore.train.run import train

    preset = yaml.safe_load(trained["preset"].read_text())
    preset["post"].update(seg_input=True, window_weights=[1.0, 4.0, 1.0], residual_gate=True, latent_noise=0.5,
                          core_weight=1.0)
    new_preset = tmp_path / "segpost.yaml"
    new_preset.write_text(yaml.safe_dump(preset))
    report = train(trained["cohort"], tmp_path / "run", preset=new_preset, seed=3, from_run=trained["run"])
    assert [r.stage for r in report.results] == ["post"]
    log = pd.read_csv(tmp_path / "run" / "logs" / "post.csv")
    assert {"mw_l1", "l1", "l1_before", "core_l1"} <= set(log.columns) and len(log) == 3
    assert (log.core_l1 >= 0).all() and (log.loss >= log.mw_l1).all()
    gen = Generator.from_pretrained(report.generator_dir, device="cpu")
    assert gen.post.in_channels == 18 and gen.post.net.model[0].conv.unit0.conv.in_channels == 18
    (p,) = gen.generate(pd.DataFrame([ROWS[0]]), seed=0, steps=2)
    assert p.ct.shape == TINY_GRID.shape and np.isfinite(p.ct.data).all()


def test_seg_aware_post_processor_reads_the_class_probabilities():
    from vctcore.models.config import PostConfig
    from vctcore.models.postprocess import PostProcessor, post_input

    torch.manual_seed(0)
    pp = PostProcessor(PostConfig(channels=(4, 8), seg_input=True)).eval()
    image = torch.randn(1, 1, 16, 16, 16)
    logits_a, logits_b = torch.randn(1, 17, 16, 16, 16), torch.randn(1, 17, 16, 16, 16)
    x = post_input(pp.cfg, image, logits_a)
    assert x.shape[1] == 18 and torch.allclose(x[:, 1:].sum(1), torch.ones(1, 16, 16, 16))
    with torch.no_grad():
        assert pp(x).shape == (1, 1, 16, 16, 16)
        assert not torch.equal(pp(x), pp(post_input(pp.cfg, image, logits_b)))
    with pytest.raises(ValueError, match="expects 18 input channels, got 1"):
        pp(image)
    # without seg_input the image passes alone
    assert post_input(PostConfig(), image, logits_a) is image


def test_post_conditions_are_one_hot_bins_with_none_for_missing():
    from vctcore.attributes import bin_labels
    from vctcore.models.postprocess import condition_channels, post_conditions

    names = ("sex", "age_years")
    assert condition_channels(names) == len(bin_labels("sex")) + len(bin_labels("age_years")) == 13
    c = post_conditions(names, {"sex": ["M", "F", None], "age_years": [45, 85, None]})
    n_sex = len(bin_labels("sex"))
    assert c.shape == (3, 13) and torch.equal(c.sum(1), torch.full((3,), 2.0))
    assert [bin_labels("sex")[i] for i in c[:, :n_sex].argmax(1)] == ["M", "F", "none"]
    assert [bin_labels("age_years")[i] for i in c[:, n_sex:].argmax(1)] == ["40-50", "80-90", "none"]
    # a column the table lacks is "none" for every row
    assert torch.equal(post_conditions(names, {"sex": ["F"]})[0, n_sex:], torch.eye(10)[0])


def test_attribute_conditioned_post_processor_reads_the_conditions():
    from vctcore.models.config import PostConfig
    from vctcore.models.postprocess import PostProcessor, post_conditions, post_input

    torch.manual_seed(0)
    cfg = PostConfig(channels=(4, 8), seg_input=True, condition_on=("sex", "age_years"))
    pp = PostProcessor(cfg).eval()
    image, logits = torch.randn(1, 1, 16, 16, 16), torch.randn(1, 17, 16, 16, 16)
    young = post_conditions(cfg.condition_on, {"sex": ["F"], "age_years": [25]})
    old = post_conditions(cfg.condition_on, {"sex": ["F"], "age_years": [85]})
    x = post_input(cfg, image, logits, young)
    assert pp.in_channels == x.shape[1] == 1 + 17 + 13
    assert torch.equal(x[0, 18:, 3, 5, 7], young[0]) and torch.equal(x[0, 18:, 0, 0, 0], young[0])
    with torch.no_grad():
        assert not torch.equal(pp(x), pp(post_input(cfg, image, logits, old)))
    with pytest.raises(ValueError, match="reads the attributes sex, age_years as conditions of shape"):
        post_input(cfg, image, logits, None)


def test_post_input_in_the_inference_layout_holds_the_same_values():
    """Generation builds the post-processor's input once in bf16 channels-last (what its CPU convolutions
    read) and adds the correction to the float32 image: the same values as the float32 input rounded."""
    from vctcore.models.config import PostConfig
    from vctcore.models.postprocess import PostProcessor, post_conditions, post_input

    torch.manual_seed(0)
    cfg = PostConfig(channels=(4, 8), seg_input=True, condition_on=("sex", "age_years"), residual_gate=True)
    pp = PostProcessor(cfg).eval()
    with torch.no_grad():
        pp.gate.fill_(0.5)
    image, logits = torch.randn(1, 1, 16, 16, 16), torch.randn(1, 17, 16, 16, 16).bfloat16()
    conds = post_conditions(cfg.condition_on, {"sex": ["M"], "age_years": [45]})
    ref = post_input(cfg, image, logits, conds)
    fast = post_input(cfg, image, logits, conds, dtype=torch.bfloat16, memory_format=torch.channels_last_3d)
    assert ref.dtype == torch.float32 and ref.is_contiguous()
    assert fast.dtype == torch.bfloat16 and fast.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(fast.float(), ref.bfloat16().float())
    with torch.no_grad():
        assert torch.equal(pp(ref), ref[:, :1] + pp.residual(ref))
        assert not torch.equal(pp.residual(ref), torch.zeros(1, 1, 16, 16, 16))
        assert torch.allclose(image + pp.residual(fast.float()), pp(ref), atol=0.05)


def test_attribute_conditioned_post_processor_trains_alone_and_generates(trained, tmp_path):
    """post.condition_on retrains post only; generation and reconstruction feed each patient's
    attributes to it, and different attributes give a different image from the same latent."""
    import yaml

    from vctcore.fidelity.recon import reconstruct
    from vctcore.train.run import train
    from vctcore.volume import read_ct, read_labels

    preset = yaml.safe_load(trained["preset"].read_text())
    preset["post"].update(seg_input=True, residual_gate=False, condition_on=["sex", "age_years"])
    new_preset = tmp_path / "condpost.yaml"
    new_preset.write_text(yaml.safe_dump(preset))
    report = train(trained["cohort"], tmp_path / "run", preset=new_preset, seed=3, from_run=trained["run"])
    assert [r.stage for r in report.results] == ["post"]
    gen = Generator.from_pretrained(report.generator_dir, device="cpu")
    assert gen.post.cfg.condition_on == ("sex", "age_years") and gen.post.in_channels == 31
    (p,) = gen.generate(pd.DataFrame([ROWS[0]]), seed=0, steps=2)
    assert p.ct.shape == TINY_GRID.shape and np.isfinite(p.ct.data).all()
    z = torch.randn((1, gen.cfg.latent_channels, *gen.cfg.latent_shape), generator=torch.Generator().manual_seed(0))
    young, old = gen.decode(z, {"sex": "F", "age_years": 25})[0], gen.decode(z, {"sex": "F", "age_years": 85})[0]
    assert not np.array_equal(young, old)
    assert np.array_equal(gen.decode(z)[0], gen.decode(z, {"bfp_pct": 30})[0])  # no conditions read: "none"
    pdir = trained["cohort"] / "patients" / "P0000"
    ct, seg = read_ct(pdir / "ct.nii.gz"), read_labels(pdir / "seg.nii.gz")
    rct, _ = reconstruct(gen, ct, seg, ROWS[0])
    assert rct.shape == ct.shape and not np.array_equal(rct.data, reconstruct(gen, ct, seg)[0].data)


def test_warm_started_diffusion_reads_new_attributes_and_keeps_the_old_weights(trained, tmp_path):
    """A diffusion that also reads BFP and MMP, warm-started from the old run: only the diffusion trains;
    before its first step every old tensor is in place and only the two new embedding tables are
    fresh; the generator it exports answers BFP; --warm-start without --from-run is refused."""
    import yaml
    from safetensors.torch import load_file

    from vctcore.models.checkpoint import load_matching
    from vctcore.models.conditioning import attribute_bins
    from vctcore.models.diffusion import LatentDiffusion
    from vctcore.models.config import load_preset
    from vctcore.train.run import train

    old_names = list(load_preset(trained["preset"]).diffusion.condition_on)
    preset = yaml.safe_load(trained["preset"].read_text())
    preset["diffusion"]["condition_on"] = [*old_names, "bfp_pct", "mmp_pct"]
    new_preset = tmp_path / "bfpmmp.yaml"
    new_preset.write_text(yaml.safe_dump(preset))
    cfg = load_preset(new_preset)
    dm = LatentDiffusion(cfg.diffusion, cfg.latent_channels)
    n_old = len(old_names)
    fresh = load_matching(dm, trained["run"] / "models" / "diffusion.safetensors", kind="diffusion")
    assert fresh == [f"embed.tables.{n_old}.weight", f"embed.tables.{n_old + 1}.weight"]
    old = load_file(str(trained["run"] / "models" / "diffusion.safetensors"))
    assert all(torch.equal(dm.state_dict()[k], v) for k, v in old.items())
    with pytest.raises(CheckpointError, match="holds a 'post' model"):
        load_matching(dm, trained["run"] / "models" / "post.safetensors", kind="diffusion")

    with pytest.raises(ValueError, match="needs --from-run"):
        train(trained["cohort"], tmp_path / "x", preset=new_preset, seed=3, warm_start=["diffusion"])
    report = train(trained["cohort"], tmp_path / "run", preset=new_preset, seed=3, from_run=trained["run"],
                   warm_start=["diffusion"])
    assert [r.stage for r in report.results] == ["diffusion"]
    assert json.loads((tmp_path / "run" / "branched_from.json").read_text())["warm_start"] == ["diffusion"]
    gen = Generator.from_pretrained(report.generator_dir, device="cpu")
    assert gen.cfg.diffusion.condition_on[-2:] == ("bfp_pct", "mmp_pct")
    # the denoiser's prediction (fp32) depends on the BFP bin; tiny weights make the change small
    bins = torch.from_numpy(attribute_bins(pd.DataFrame([{**ROWS[0], "bfp_pct": v} for v in (12.0, 45.0)]),
                                           gen.cfg.diffusion.condition_on))
    z_t = torch.randn((1, gen.cfg.latent_channels, *gen.cfg.latent_shape), generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500])
    with torch.no_grad():
        lean, fat = gen.dm(z_t, t, bins[:1]), gen.dm(z_t, t, bins[1:])
    assert not torch.equal(lean, fat)


def test_sampling_defaults_change_without_retraining(trained, tmp_path):
    """A preset that changes only the diffusion's sampler and steps and the segmentation's island
    threshold: a finished run resumes (no new architecture error, nothing trains) and re-exports with
    them; --from-run reuses the diffusion."""
    import yaml

    from vctcore.train.run import train

    preset = yaml.safe_load(trained["preset"].read_text())
    preset["diffusion"].update(sampler="dpm++", sample_steps=7)
    preset["seg_min_island_ml"] = 20.0
    new_preset = tmp_path / "dpm.yaml"
    new_preset.write_text(yaml.safe_dump(preset))
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    report = train(trained["cohort"], run, preset=new_preset, seed=3)
    assert report.results == [] and report.generator_dir is not None
    cfg = json.loads((report.generator_dir / "config.json").read_text())["diffusion"]
    assert (cfg["sampler"], cfg["sample_steps"]) == ("dpm++", 7)
    history = json.loads((run / "run.json").read_text())["schedule_history"]
    assert history[-1]["diffusion_sampling"]["sampler"] == "ddim"
    assert history[-1]["seg_min_island_ml"] == 0.0
    assert json.loads((report.generator_dir / "config.json").read_text())["seg_min_island_ml"] == 20.0
    branched = train(trained["cohort"], tmp_path / "branch", preset=new_preset, seed=3, from_run=trained["run"])
    assert branched.results == [] and "diffusion" in json.loads(
        (tmp_path / "branch" / "branched_from.json").read_text())["stages"]


def test_generation_relabels_stray_islands_of_the_segmentation_only(trained):
    """seg_min_island_ml: the same sample, its segmentation with the islands under the threshold given
    their neighbours' class; the CT is untouched. The tiny generator decodes one class everywhere, so its
    segmentation decoder is replaced by one that returns a real tiny phantom's map with bone specks."""
    from dataclasses import replace

    from scipy import ndimage

    from vctcore.cohort import read_attributes
    from vctcore.label_islands import remove_small_islands
    from vctcore.volume import read_labels

    gen = Generator.from_pretrained(trained["second"].generator_dir, device="cpu")
    assert gen.cfg.seg_min_island_ml == 0.0
    cohort = trained["cohort"]
    pid = read_attributes(cohort)["id"].iloc[0]
    speckled = read_labels(cohort / "patients" / str(pid) / "seg.nii.gz").data.astype(np.uint8)
    clear = np.argwhere(ndimage.binary_erosion(speckled == 0, np.ones((3, 3, 3)), iterations=2))
    specks = clear[np.random.default_rng(0).choice(len(clear), 6, replace=False)]
    speckled[tuple(specks.T)] = 1
    logits = torch.nn.functional.one_hot(torch.from_numpy(speckled).long(), 17).permute(3, 0, 1, 2)[None].float()
    gen.seg_ae.decode = lambda z: logits
    table = pd.DataFrame(ROWS[:1])
    raw = gen.generate(table, seed=5)[0]
    assert np.array_equal(raw.seg.data, speckled)
    voxel_ml = float(np.prod(TINY_GRID.spacing_mm)) / 1000.0  # 2.3 mL
    gen.cfg = replace(gen.cfg, seg_min_island_ml=4.5 * voxel_ml)  # islands of up to 4 voxels
    cleaned = gen.generate(table, seed=5)[0]
    assert np.array_equal(cleaned.ct.data, raw.ct.data)
    assert np.array_equal(cleaned.seg.data, remove_small_islands(speckled, 5)[0])
    assert np.all(cleaned.seg.data[tuple(specks.T)] == 0)
    with pytest.raises(ValueError, match="seg_min_island_ml"):
        replace(gen.cfg, seg_min_island_ml=-1.0).validate()


def test_the_post_processor_runs_in_windows_of_its_training_patch(trained):
    """Instance norm makes the post U-Net's output depend on its window's statistics: generation runs it
    in windows of the patch it was trained on (the tiny preset's 32^3), whole only without a patch."""
    from dataclasses import replace

    from vctcore.generator import post_window
    from vctcore.models.config import StageSchedule

    gen = Generator.from_pretrained(trained["second"].generator_dir, device="cpu")
    assert post_window(gen.cfg) == (32, 32, 32)
    seen = []
    residual = gen.post.residual
    gen.post.residual = lambda t: (seen.append(tuple(t.shape[2:])), residual(t))[1]
    table = pd.DataFrame(ROWS[:1])
    windowed = gen.generate(table, seed=0, steps=2)[0]
    assert len(seen) > 1 and set(seen) == {(32, 32, 32)}
    seen.clear()
    gen.cfg = replace(gen.cfg, schedules={**gen.cfg.schedules, "post": StageSchedule(steps=3)})
    assert post_window(gen.cfg) is None
    whole = gen.generate(table, seed=0, steps=2)[0]
    assert seen == [TINY_GRID.shape]
    assert np.array_equal(whole.seg.data, windowed.seg.data) and not np.array_equal(whole.ct.data, windowed.ct.data)


def test_post_latent_noise_scales_with_the_latent_spread():
    from vctcore.train.stages import _noisy_latent

    z = torch.randn(4, 3, 6, 6, 6) * torch.tensor([1.0, 10.0, 100.0]).view(1, 3, 1, 1, 1)
    gen = torch.Generator().manual_seed(0)
    assert _noisy_latent(z, 0.0, gen) is z
    d = (_noisy_latent(z, 0.5, gen) - z).std(dim=(0, 2, 3, 4))
    assert torch.all(d > 0) and torch.all(d / z.std(dim=(0, 2, 3, 4)) < 0.5)
    assert 50 < float(d[2] / d[0]) < 200  # noise follows each channel's spread


def test_export_manifest_records_provenance(trained):
    gen_dir = trained["second"].generator_dir
    manifest = json.loads((gen_dir / "manifest.json").read_text())
    assert set(manifest["files"]) == {"config.json", "image_ae.safetensors", "seg_ae.safetensors",
                                      "diffusion.safetensors", "post.safetensors"}
    assert manifest["training"]["n_patients"] == len(ROWS)
    assert manifest["training"]["stages"]["diffusion"]["steps"] == 6
    assert manifest["support"]["sex"] == {"categories": ["F", "M"]}
    assert manifest["support"]["height_cm"] == {"min": 160.0, "max": 185.0}
    # the diffusion weights ship as float16 and load back into the float32 module
    from safetensors import safe_open

    with safe_open(str(gen_dir / "diffusion.safetensors"), framework="pt") as fh:
        dtypes = {fh.get_tensor(k).dtype for k in fh.keys()}
        assert fh.metadata()["stored_dtype"] == "float16"
    import torch

    assert torch.float16 in dtypes
    gen = Generator.from_pretrained(gen_dir, device="cpu")
    assert {p.dtype for p in gen.dm.parameters()} == {torch.float32}


def test_generation_is_deterministic_and_well_formed(trained):
    gen = Generator.from_pretrained(trained["second"].generator_dir, device="cpu")
    table = pd.DataFrame(ROWS[:2])
    sampled = []  # the sampled latents: the tiny autoencoders (a few steps) may decode them all alike
    decode = gen.decode
    gen.decode = lambda z, attributes=None: (sampled.append(z.clone()), decode(z, attributes))[1]
    a = gen.generate(table, seed=5)
    b = gen.generate(table, seed=5)
    c = gen.generate(table, seed=6)
    assert len(a) == 2
    for p, q in zip(a, b):
        assert np.array_equal(p.ct.data, q.ct.data) and np.array_equal(p.seg.data, q.seg.data)
    assert torch.equal(sampled[0], sampled[2]) and not torch.equal(sampled[0], sampled[4])
    p = a[0]
    assert p.ct.shape == TINY_GRID.shape and p.seg.shape == TINY_GRID.shape
    assert p.ct.spacing_mm == pytest.approx(TINY_GRID.spacing_mm)
    assert -1024 <= p.ct.data.min() and p.ct.data.max() <= 3071
    assert p.seg.data.max() <= 16
    # batching does not change a patient: noise comes from (seed, row) alone
    batched = gen.generate(table, seed=5, batch_size=2)
    assert np.allclose(batched[1].ct.data, a[1].ct.data, atol=1.0)


def test_dpm_solver_sampler_is_deterministic_and_a_checkpoint_can_default_to_it(trained, tmp_path):
    """sampler="dpm++" gives the same volume for the same seed and another one than DDIM; a checkpoint
    whose config names it samples with it by default; an unknown sampler in a config is refused."""
    from vctcore.models.checkpoint import sha256_file

    gen = Generator.from_pretrained(trained["second"].generator_dir, device="cpu")
    table = pd.DataFrame(ROWS[:1])
    a, b = gen.generate(table, seed=5, sampler="dpm++"), gen.generate(table, seed=5, sampler="dpm++")
    assert np.array_equal(a[0].ct.data, b[0].ct.data)
    # compared as sampled latents: the tiny autoencoders (a few steps) may decode them all alike
    noise = torch.randn((1, gen.cfg.latent_channels, *gen.cfg.latent_shape), generator=torch.Generator().manual_seed(0))
    bins = torch.zeros((1, len(gen.cfg.diffusion.condition_on)), dtype=torch.long)
    with torch.no_grad():
        assert not torch.equal(gen.dm.sample(bins, noise, sampler="dpm++"), gen.dm.sample(bins, noise, sampler="ddim"))
    with pytest.raises(ValueError, match="sampler must be one of ddim, dpm"):
        gen.generate(table, seed=5, sampler="euler")

    def with_sampler(name: str):
        d = tmp_path / name
        shutil.copytree(trained["second"].generator_dir, d)
        cfg = json.loads((d / "config.json").read_text())
        cfg["diffusion"]["sampler"] = name
        (d / "config.json").write_text(json.dumps(cfg))
        manifest = json.loads((d / "manifest.json").read_text())
        manifest["files"]["config.json"] = sha256_file(d / "config.json")
        (d / "manifest.json").write_text(json.dumps(manifest))
        return d

    dpm = Generator.from_pretrained(with_sampler("dpm++"), device="cpu")
    assert np.array_equal(dpm.generate(table, seed=5)[0].ct.data, a[0].ct.data)
    with pytest.raises(CheckpointError, match="diffusion.sampler must be one of"):
        Generator.from_pretrained(with_sampler("euler"), device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("sampler", ["ddim", "dpm++", "ddpm"])
def test_cuda_generation_is_deterministic(trained, sampler):
    # DDPM draws noise at every step; the first GPU run found it drawing from a CPU generator
    gen = Generator.from_pretrained(trained["second"].generator_dir, device="cuda")
    table = pd.DataFrame(ROWS[:1])
    a, b = gen.generate(table, seed=5, sampler=sampler), gen.generate(table, seed=5, sampler=sampler)
    assert np.array_equal(a[0].ct.data, b[0].ct.data) and np.array_equal(a[0].seg.data, b[0].seg.data)


def test_support_warnings_name_the_attributes(trained):
    gen = Generator.from_pretrained(trained["second"].generator_dir, device="cpu")
    msgs = gen.support_warnings(pd.DataFrame({"sex": ["M"], "height_cm": [205.0], "weight_kg": [80.0]}))
    assert len(msgs) == 1 and msgs[0].startswith("height_cm") and "160-185" in msgs[0]


def test_bad_checkpoints_are_refused_with_the_file_named(trained, tmp_path):
    src = trained["second"].generator_dir
    tampered = tmp_path / "tampered"
    shutil.copytree(src, tampered)
    flip_byte(tampered / "diffusion.safetensors", -5)
    with pytest.raises(CheckpointError, match="diffusion.safetensors: sha256 differs"):
        Generator.from_pretrained(tampered)
    truncated = tmp_path / "truncated"
    shutil.copytree(src, truncated)
    data = (truncated / "seg_ae.safetensors").read_bytes()
    (truncated / "seg_ae.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="seg_ae.safetensors"):
        Generator.from_pretrained(truncated, verify=False)
    other_arch = tmp_path / "other_arch"
    shutil.copytree(src, other_arch)
    cfg = json.loads((other_arch / "config.json").read_text())
    cfg["diffusion"]["channels"] = [32, 64]
    (other_arch / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="diffusion.safetensors: weights do not fit the diffusion architecture"):
        Generator.from_pretrained(other_arch, verify=False)
    missing = tmp_path / "missing"
    shutil.copytree(src, missing)
    (missing / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="manifest.json: missing"):
        Generator.from_pretrained(missing)


def _vct(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vctcore.cli", *args], capture_output=True, text=True, timeout=300)


def test_vct_generate_writes_a_resumable_cohort(trained, tmp_path):
    out = tmp_path / "synth"
    ckpt = str(trained["second"].generator_dir)
    res = _vct("generate", "--n", "2", "--seed", "1", "--out", str(out), "--checkpoint", ckpt, "--device", "cpu",
               "--quiet")
    assert res.returncode == 0, res.stderr
    table = pd.read_csv(out / "attributes.csv")
    assert list(table["id"]) == ["S0000", "S0001"]
    for pid in table["id"]:
        assert (out / "patients" / pid / "ct.nii.gz").exists() and (out / "patients" / pid / "seg.nii.gz").exists()
    prov = json.loads((out / "cohort.json").read_text())
    assert prov["maker"] == "vctcore.generator" and "diffusion.safetensors" in prov["checkpoint_sha256"]
    # the tiny model saw 6 patients: sampled attributes outside their ranges are named, on stderr and in cohort.json
    assert prov["support_warnings"]
    for msg in prov["support_warnings"]:
        assert f"warning: outside the training support: {msg}" in res.stderr
    first_mtime = (out / "patients" / "S0000" / "ct.nii.gz").stat().st_mtime_ns
    (out / "patients" / "S0001" / "ct.nii.gz").unlink()
    res = _vct("generate", "--n", "2", "--seed", "1", "--out", str(out), "--checkpoint", ckpt, "--device", "cpu",
               "--quiet")
    assert res.returncode == 0, res.stderr
    assert (out / "patients" / "S0000" / "ct.nii.gz").stat().st_mtime_ns == first_mtime
    assert (out / "patients" / "S0001" / "ct.nii.gz").exists()


def test_vct_generate_bad_checkpoint_is_one_line(tmp_path):
    res = _vct("generate", "--n", "1", "--out", str(tmp_path / "o"), "--checkpoint", str(tmp_path / "nope"))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "generator checkpoint directory does not exist" in res.stderr
