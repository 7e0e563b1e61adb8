"""``vct train --from-run GENERATOR_DIR --stages diffusion|seg_decoder``: a finished (tiny, real) generator's
diffusion U-Net or segmentation decoder trained on, resumably, on a cohort; only that network's file changes."""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from vctcore.cli import main as vct_main
from vctcore.generator import Generator
from vctcore.train.run import train
from vctcore.volume import CTVolume, read_ct, write_ct

# generator training (minutes of CPU): run with -m slow
pytestmark = pytest.mark.slow


def _args(g: dict, stage: str, run, val_patients: int, seed: int) -> list[str]:
    """``vct train`` arguments training the tiny generator's ``stage`` on for 4 steps at batch 2 on CPU."""
    return ["train", "--from-run", str(g["generator"]), "--stages", stage, "--cohort", str(g["cohort"]),
            "--run", str(run), "--steps", "4", "--batch-size", "2", "--val-patients", str(val_patients),
            "--device", "cpu", "--seed", str(seed), "--quiet"]


def _same_files(base, out, names) -> None:
    for name in names:
        assert (out / name).read_bytes() == (base / name).read_bytes(), name


def test_diffusion_trains_on_resumably_and_writes_a_verified_generator(tiny_generator, tmp_path, capsys):
    base = tiny_generator["generator"]
    run = tmp_path / "on"
    args = _args(tiny_generator, "diffusion", run, val_patients=1, seed=2)
    # a tiny time limit stops after one unit of work: one patient encoded per call, then one training step
    assert vct_main(args + ["--max-minutes", "1e-9"]) == 0
    assert "latents: paused at step 1/6" in capsys.readouterr().out
    assert json.loads((run / "latents" / "done.json").read_text())["done"] == 1
    assert not (run / "logs" / "diffusion.csv").exists()
    for _ in range(5):
        assert vct_main(args + ["--max-minutes", "1e-9"]) == 0
    assert "diffusion: paused at step 1/4" in capsys.readouterr().out
    assert not (run / "generator").exists()
    assert vct_main(args) == 0
    out_text = capsys.readouterr().out
    assert "diffusion: held-out val_loss" in out_text and "generator written to" in out_text
    assert list(pd.read_csv(run / "logs" / "diffusion.csv")["step"]) == [1, 2, 3, 4]  # 1 first, 2..4 on the rerun

    out = run / "generator"
    gen = Generator.from_pretrained(out, device="cpu")  # verifies every file's sha256
    _same_files(base, out, ("image_ae.safetensors", "seg_ae.safetensors", "post.safetensors", "config.json"))
    old, new = load_file(str(base / "diffusion.safetensors")), load_file(str(out / "diffusion.safetensors"))
    assert old.keys() == new.keys() and any(not torch.equal(old[k], new[k]) for k in old)
    # the latent statistics are the base generator's: its autoencoders and latents did not change
    assert all(torch.equal(old[k], new[k]) for k in old if k.startswith("latent_"))

    manifest = json.loads((out / "manifest.json").read_text())
    rec = manifest["training"]["continuations"][-1]
    assert rec["steps"] == 4 and rec["batch_size"] == 2 and rec["n_patients"] == 6 and rec["val_patients"] == 1
    assert rec["device"].startswith("cpu: ") and "threads" in rec["device"]  # the CPU model, for the timing
    assert math.isfinite(rec["val_loss_before"]) and math.isfinite(rec["val_loss_after"])
    assert rec["base_diffusion_sha256"] == json.loads((base / "manifest.json").read_text())["files"]["diffusion.safetensors"]
    assert rec["created_utc"].endswith("Z") and rec["versions"]["torch"] and rec["seeds"] == {"run": 2}
    card = (out / "model_card.md").read_text()
    assert "Continued training" in card and "| diffusion | 4 | 2 |" in card and "--stages diffusion" in card
    metrics = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else {}
    assert not any(k.startswith("fidelity.") for k in metrics)
    patient = gen.generate(pd.DataFrame([{"sex": "F", "age_years": 50, "height_cm": 165, "weight_kg": 70}]), seed=1)[0]
    assert patient.ct.shape == tuple(gen.cfg.grid_shape)


def test_training_on_refuses_bad_inputs_with_clear_errors(tiny_generator, tmp_path):
    base, cohort = tiny_generator["generator"], tiny_generator["cohort"]
    kw = dict(from_run=base, device="cpu")
    with pytest.raises(ValueError, match="too few"):
        train(cohort, tmp_path / "few", stages=["diffusion"], steps=2, batch_size=2, val_patients=6, **kw)
    with pytest.raises(ValueError, match="at least 1"):
        train(cohort, tmp_path / "zero", stages=["diffusion"], steps=0, **kw)
    with pytest.raises(ValueError, match="diffusion, seg_decoder"):
        train(cohort, tmp_path / "post", stages=["post"], **kw)
    with pytest.raises(ValueError, match="need --from-run GENERATOR_DIR"):
        train(cohort, tmp_path / "no_gen", preset=tiny_generator["preset"], steps=2)
    assert not (tmp_path / "few").exists() and not (tmp_path / "zero").exists()

    run = tmp_path / "run"
    train(cohort, run, stages=["diffusion"], steps=2, batch_size=2, val_patients=1, max_minutes=1e-9, **kw)
    with pytest.raises(ValueError, match="val_patients differs"):
        train(cohort, run, stages=["diffusion"], steps=2, batch_size=2, val_patients=2, **kw)

    no_attr = tmp_path / "no_attr"
    shutil.copytree(cohort, no_attr)
    table = pd.read_csv(no_attr / "attributes.csv").drop(columns=["weight_kg"])
    table.to_csv(no_attr / "attributes.csv", index=False)
    with pytest.raises(ValueError, match="lacks the conditioning attribute.*weight_kg"):
        train(no_attr, tmp_path / "r2", stages=["diffusion"], steps=2, batch_size=2, val_patients=1, **kw)

    other_grid = tmp_path / "other_grid"
    shutil.copytree(cohort, other_grid)
    ct_path = other_grid / "patients" / "P0002" / "ct.nii.gz"
    ct = read_ct(ct_path)
    write_ct(CTVolume(ct.data[:, :, :64], ct.affine), ct_path)
    with pytest.raises(ValueError, match="P0002.*differs from the model's grid"):
        train(other_grid, tmp_path / "r3", stages=["diffusion"], steps=2, batch_size=2, val_patients=1, **kw)

    # the right shape at another voxel spacing: every patient is checked, not only the first
    other_spacing = tmp_path / "other_spacing"
    shutil.copytree(cohort, other_spacing)
    ct_path = other_spacing / "patients" / "P0003" / "ct.nii.gz"
    ct = read_ct(ct_path)
    affine = ct.affine.copy()
    affine[2, 2] *= 1.5
    write_ct(CTVolume(ct.data, affine), ct_path)
    with pytest.raises(ValueError, match="P0003: voxel spacing .* differs from the model's"):
        train(other_spacing, tmp_path / "r4", stages=["diffusion"], steps=2, batch_size=2, val_patients=1, **kw)


def test_seg_decoder_trains_on_and_moves_only_the_decoder(tiny_generator, tmp_path, capsys):
    base = tiny_generator["generator"]
    run = tmp_path / "seg"
    args = _args(tiny_generator, "seg_decoder", run, val_patients=2, seed=3)
    assert vct_main(args + ["--max-minutes", "1e-9"]) == 0
    assert "seg_decoder: paused at step 1/4" in capsys.readouterr().out
    assert vct_main(args) == 0
    out_text = capsys.readouterr().out
    assert "seg_decoder: done at step 4/4" in out_text and "held-out val_dice" in out_text
    assert list(pd.read_csv(run / "logs" / "seg_decoder.csv")["step"]) == [1, 2, 3, 4]
    assert not (run / "latents").exists()  # the diffusion did not train on: nothing encoded

    new = run / "generator"
    gen = Generator.from_pretrained(new, device="cpu")  # verifies every file's sha256
    _same_files(base, new, ("image_ae.safetensors", "diffusion.safetensors", "post.safetensors", "config.json"))
    old_w, new_w = load_file(str(base / "seg_ae.safetensors")), load_file(str(new / "seg_ae.safetensors"))
    changed = {k for k in old_w if not torch.equal(old_w[k], new_w[k])}
    assert changed and all(k.startswith("vq.decoder.") for k in changed)

    rec = json.loads((new / "manifest.json").read_text())["training"]["continuations"][-1]
    assert rec["stage"] == "seg_decoder" and rec["steps"] == 4 and rec["val_patients"] == 2
    assert all(0 <= rec[k] <= 1 and math.isfinite(rec[k]) for k in ("val_dice_before", "val_dice_after"))
    assert rec["base_seg_ae_sha256"] == json.loads((base / "manifest.json").read_text())["files"]["seg_ae.safetensors"]
    card = (new / "model_card.md").read_text()
    assert "| seg_decoder | 4 | 2 |" in card and "Dice " in card and "--stages seg_decoder" in card
    metrics = json.loads((new / "metrics.json").read_text()) if (new / "metrics.json").exists() else {}
    assert not any(k.startswith(("fidelity.", "reconstruction.")) for k in metrics)
    patient = gen.generate(pd.DataFrame([{"sex": "M", "age_years": 40, "height_cm": 180, "weight_kg": 80}]), seed=1)[0]
    assert patient.seg.data.shape == tuple(gen.cfg.grid_shape)
    assert np.isfinite(patient.ct.data).all()


def test_model_card_lists_diffusion_and_segmentation_decoder_continuations(tiny_generator, tmp_path):
    from vctcore.train.model_card import write_model_card

    gen = tmp_path / "gen"
    shutil.copytree(tiny_generator["generator"], gen)
    manifest = json.loads((gen / "manifest.json").read_text())
    common = {"batch_size": 4, "seconds": 180.0, "device": "NVIDIA H100 80GB HBM3", "cohort": "phantoms in memory",
              "n_patients": 200}
    manifest["training"]["continuations"] = [
        {"stage": "diffusion", "steps": 2572, "val_loss_before": 0.158, "val_loss_after": 0.129, **common},
        {"stage": "seg_decoder", "steps": 6221, "val_dice_before": 0.8452, "val_dice_after": 0.8831,
         "method": "provenance/seg_decoder_ft.py", **common},
        {"stage": "post", "steps": 600, "held_out": "PSNR 33.2 -> 33.3 dB on 8 reconstructions", **common},
    ]
    (gen / "manifest.json").write_text(json.dumps(manifest))
    card = write_model_card(gen).read_text()
    assert "| diffusion | 2572 | 4 | 3.0 | NVIDIA H100 80GB HBM3 | `phantoms in memory` (200) | loss 0.158 -> 0.129 |" in card
    assert "| seg_decoder | 6221 | 4 | 3.0 | NVIDIA H100 80GB HBM3 | `phantoms in memory` (200) | Dice 0.8452 -> 0.8831 |" in card
    assert "- continuation 2: provenance/seg_decoder_ft.py" in card
    assert "| post | 600 | 4 | 3.0 | NVIDIA H100 80GB HBM3 | `phantoms in memory` (200) | PSNR 33.2 -> 33.3 dB on 8" in card
