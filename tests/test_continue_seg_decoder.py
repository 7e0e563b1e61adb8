"""vct continue-seg-decoder: train a finished generator's segmentation decoder further, resumably, on a
cohort; only the decoder's weights may change (the diffusion's latents come from the frozen encoder)."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from vctcore.cli import main as vct_main
from vctcore.generator import Generator
from vctcore.train.continue_seg_decoder import continue_seg_decoder

# training continuation (a research path issue 38 folds into `vct train --from-run`): run with -m slow
pytestmark = pytest.mark.slow


def test_seg_decoder_continuation_resumes_and_moves_only_the_decoder(tiny_generator, tmp_path, capsys):
    base = tiny_generator["generator"]
    run = tmp_path / "seg"
    args = ["continue-seg-decoder", "--checkpoint", str(base), "--cohort", str(tiny_generator["cohort"]),
            "--run", str(run), "--steps", "4", "--batch-size", "2", "--slab", "4", "--val-patients", "2",
            "--device", "cpu", "--seed", "3", "--quiet"]
    # a time limit of 0 stops after one unit of work: one patient encoded per call, then one training step
    assert vct_main(args + ["--max-minutes", "0"]) == 0
    assert "latents: paused after encoding 1/6 patients" in capsys.readouterr().out
    for _ in range(5):
        assert vct_main(args + ["--max-minutes", "0"]) == 0
    assert "seg_decoder: paused at step 1/4" in capsys.readouterr().out
    assert (run / "cache").exists()  # the labels are the training targets: kept until the run is done
    assert vct_main(args) == 0
    out = capsys.readouterr().out
    assert "seg_decoder: done, 4 steps" in out and "held-out Dice" in out
    assert list(pd.read_csv(run / "logs" / "seg_decoder.csv")["step"]) == [1, 2, 3, 4]
    assert not (run / "cache").exists()

    new = run / "generator"
    gen = Generator.from_pretrained(new, device="cpu")  # verifies every file's sha256
    # only the segmentation half of the joint latent was encoded (the image encoder never ran)
    assert np.load(run / "latents" / "z.npy", mmap_mode="r").shape[1] == gen.cfg.seg_ae.latent_channels
    for name in ("image_ae.safetensors", "diffusion.safetensors", "post.safetensors", "config.json"):
        assert (new / name).read_bytes() == (base / name).read_bytes()
    old_w, new_w = load_file(str(base / "seg_ae.safetensors")), load_file(str(new / "seg_ae.safetensors"))
    changed = {k for k in old_w if not torch.equal(old_w[k], new_w[k])}
    assert changed and all(k.startswith("vq.decoder.") for k in changed)

    manifest = json.loads((new / "manifest.json").read_text())
    rec = manifest["training"]["continuations"][-1]
    assert rec["stage"] == "seg_decoder" and rec["steps"] == 4 and rec["slab"] == 4 and rec["val_patients"] == 2
    assert all(0 <= rec[k] <= 1 and math.isfinite(rec[k]) for k in ("val_dice_before", "val_dice_after"))
    assert rec["base_seg_ae_sha256"] == json.loads((base / "manifest.json").read_text())["files"]["seg_ae.safetensors"]
    card = (new / "model_card.md").read_text()
    assert "| seg_decoder | 4 | 2 |" in card and "Dice " in card and "vct continue-seg-decoder" in card
    metrics = json.loads((new / "metrics.json").read_text()) if (new / "metrics.json").exists() else {}
    assert not any(k.startswith(("fidelity.", "reconstruction.")) for k in metrics)
    patient = gen.generate(pd.DataFrame([{"sex": "M", "age_years": 40, "height_cm": 180, "weight_kg": 80}]), seed=1)[0]
    assert patient.seg.data.shape == tuple(gen.cfg.grid_shape)


def test_seg_decoder_continuation_refuses_bad_inputs(tiny_generator, tmp_path):
    base, cohort = tiny_generator["generator"], tiny_generator["cohort"]
    with pytest.raises(ValueError, match="too few to hold out 6"):
        continue_seg_decoder(base, cohort, tmp_path / "few", steps=2, val_patients=6, device="cpu")
    with pytest.raises(ValueError, match="slab at least 0"):
        continue_seg_decoder(base, cohort, tmp_path / "slab", steps=2, slab=-1, device="cpu")
    run = tmp_path / "run"
    continue_seg_decoder(base, cohort, run, steps=1, batch_size=1, val_patients=1, slab=2, device="cpu",
                         max_minutes=0)
    with pytest.raises(ValueError, match=r"slab differs"):
        continue_seg_decoder(base, cohort, run, steps=1, batch_size=1, val_patients=1, slab=3, device="cpu")
