"""``vct continue-diffusion``: more diffusion training on a finished (tiny, real) generator."""
from __future__ import annotations

import json
import math
import shutil

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from vctcore.cli import main as vct_main
from vctcore.generator import Generator
from vctcore.train.continue_diffusion import continue_diffusion
from vctcore.volume import CTVolume, read_ct, write_ct

# training continuation (a research path issue 38 folds into `vct train --from-run`): run with -m slow
pytestmark = pytest.mark.slow


def test_continuation_resumes_and_writes_a_verified_generator(tiny_generator, tmp_path, capsys):
    base = tiny_generator["generator"]
    run = tmp_path / "cont"
    args = ["continue-diffusion", "--checkpoint", str(base), "--cohort", str(tiny_generator["cohort"]),
            "--run", str(run), "--steps", "4", "--batch-size", "2", "--val-patients", "1", "--device", "cpu",
            "--seed", "2", "--quiet"]
    # a time limit of 0 stops after one unit of work: first while encoding (one patient per call), then
    # after the first training step
    assert vct_main(args + ["--max-minutes", "0"]) == 0
    assert "latents: paused after encoding 1/6 patients" in capsys.readouterr().out
    assert json.loads((run / "latents" / "done.json").read_text())["done"] == 1
    assert not (run / "logs" / "diffusion.csv").exists() and (run / "cache").exists()
    for _ in range(4):
        assert vct_main(args + ["--max-minutes", "0"]) == 0
    assert "paused after encoding 5/6 patients" in capsys.readouterr().out
    assert vct_main(args + ["--max-minutes", "0"]) == 0  # the last patient, then one training step
    assert "paused at step 1/4" in capsys.readouterr().out
    assert not (run / "cache").exists()  # removed once every patient was encoded
    assert not (run / "generator").exists()
    assert vct_main(args) == 0
    assert "held-out loss" in capsys.readouterr().out
    log = pd.read_csv(run / "logs" / "diffusion.csv")
    assert list(log["step"]) == [1, 2, 3, 4]  # step 1 from the first call, 2..4 from the rerun

    out = run / "generator"
    gen = Generator.from_pretrained(out, device="cpu")  # verifies every file's sha256
    for name in ("image_ae.safetensors", "seg_ae.safetensors", "post.safetensors", "config.json"):
        assert (out / name).read_bytes() == (base / name).read_bytes()
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
    card = (out / "model_card.md").read_text()
    assert "Continued training" in card and "| diffusion | 4 | 2 |" in card and "vct continue-diffusion" in card
    metrics = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else {}
    assert not any(k.startswith("fidelity.") for k in metrics)
    patient = gen.generate(pd.DataFrame([{"sex": "F", "age_years": 50, "height_cm": 165, "weight_kg": 70}]), seed=1)[0]
    assert patient.ct.shape == tuple(gen.cfg.grid_shape)


def test_continuation_refuses_bad_inputs_with_clear_errors(tiny_generator, tmp_path):
    base, cohort = tiny_generator["generator"], tiny_generator["cohort"]
    with pytest.raises(ValueError, match="too few"):
        continue_diffusion(base, cohort, tmp_path / "few", steps=2, batch_size=2, val_patients=5, device="cpu")
    with pytest.raises(ValueError, match="at least 1"):
        continue_diffusion(base, cohort, tmp_path / "zero", steps=0, device="cpu")

    run = tmp_path / "run"
    continue_diffusion(base, cohort, run, steps=2, batch_size=2, val_patients=1, device="cpu", max_minutes=0)
    with pytest.raises(ValueError, match="steps differs"):
        continue_diffusion(base, cohort, run, steps=3, batch_size=2, val_patients=1, device="cpu")
    # a run recorded before content fingerprints (sizes and mtimes) still continues on its own cohort
    from vctcore.train.data import legacy_cohort_fingerprint

    meta = json.loads((run / "continue.json").read_text())
    ids = [str(i) for i in pd.read_csv(cohort / "attributes.csv")["id"]]
    meta["cohort_fingerprint"] = legacy_cohort_fingerprint(cohort, ids)
    (run / "continue.json").write_text(json.dumps(meta))
    continue_diffusion(base, cohort, run, steps=2, batch_size=2, val_patients=1, device="cpu", max_minutes=0)

    no_attr = tmp_path / "no_attr"
    shutil.copytree(cohort, no_attr)
    table = pd.read_csv(no_attr / "attributes.csv").drop(columns=["weight_kg"])
    table.to_csv(no_attr / "attributes.csv", index=False)
    with pytest.raises(ValueError, match="lacks the conditioning attribute.*weight_kg"):
        continue_diffusion(base, no_attr, tmp_path / "r2", steps=2, batch_size=2, val_patients=1, device="cpu")

    other_grid = tmp_path / "other_grid"
    shutil.copytree(cohort, other_grid)
    ct_path = other_grid / "patients" / "P0002" / "ct.nii.gz"
    ct = read_ct(ct_path)
    write_ct(CTVolume(ct.data[:, :, :64], ct.affine), ct_path)
    with pytest.raises(ValueError, match="P0002.*differs from the model's grid"):
        continue_diffusion(base, other_grid, tmp_path / "r3", steps=2, batch_size=2, val_patients=1, device="cpu")

    # the right shape at another voxel spacing: every patient is checked, not only the first
    other_spacing = tmp_path / "other_spacing"
    shutil.copytree(cohort, other_spacing)
    ct_path = other_spacing / "patients" / "P0003" / "ct.nii.gz"
    ct = read_ct(ct_path)
    affine = ct.affine.copy()
    affine[2, 2] *= 1.5
    write_ct(CTVolume(ct.data, affine), ct_path)
    with pytest.raises(ValueError, match="P0003: voxel spacing .* differs from the model's"):
        continue_diffusion(base, other_spacing, tmp_path / "r4", steps=2, batch_size=2, val_patients=1, device="cpu")


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
