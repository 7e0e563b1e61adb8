"""A generator checkpoint with a composition guide: rows that give the guide's attributes are steered, rows
that do not, ``composition=False`` and the DDIM sampler sample exactly as without a guide; a guide the
manifest does not list, a corrupt one and one of another latent size are refused with one line naming it.
Untrained generator (real code paths, random weights) and a random linear guide."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from untrained_generator import write_untrained_generator
from vctcore.generator import GUIDE_FILE, Generator
from vctcore.models.attribute_guidance import LinearGuide
from vctcore.models.checkpoint import CheckpointError, sha256_file

ATTRS = ("bfp_pct", "mmp_pct", "weight_kg")
ROW = {"sex": "F", "age_years": 50.0, "height_cm": 165.0}


def _timesteps(g: Generator) -> list[int]:
    seen: list[int] = []

    def record(x0, t):
        seen.append(int(t))
        return x0

    noise = torch.zeros((1, g.cfg.latent_channels, *g.cfg.latent_shape))
    g.dm.sample(torch.zeros((1, len(g.cfg.diffusion.condition_on)), dtype=torch.long), noise, steer=record,
                sampler="dpm++")
    return seen


def _add_guide(root, guide: LinearGuide, listed: bool = True) -> None:
    guide.save(root / GUIDE_FILE)
    if listed:
        manifest = json.loads((root / "manifest.json").read_text())
        manifest["files"][GUIDE_FILE] = sha256_file(root / GUIDE_FILE)
        (root / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def generators(tmp_path_factory):
    plain_root = write_untrained_generator(tmp_path_factory.mktemp("plain") / "gen")
    guided_root = write_untrained_generator(tmp_path_factory.mktemp("guided") / "gen")
    plain = Generator.from_pretrained(plain_root)
    d = plain.cfg.latent_channels * int(np.prod(plain.cfg.latent_shape))
    w = torch.from_numpy(np.random.default_rng(0).normal(size=(3, d)).astype(np.float32))
    t = _timesteps(plain)[0]  # the noisiest step only
    _add_guide(guided_root, LinearGuide(ATTRS, {t: (w, torch.tensor([30.0, 35.0, 80.0]))}, {"strength": 1.0}))
    return plain, Generator.from_pretrained(guided_root), guided_root


def _ct(g: Generator, row: dict, **kw) -> np.ndarray:
    (p,) = g.generate(pd.DataFrame([row]), seed=3, **{"sampler": "dpm++", **kw})
    return np.asarray(p.ct.data)


def test_rows_with_composition_are_steered_and_the_rest_sample_as_before(generators):
    plain, guided, _ = generators
    assert guided.guide is not None and plain.guide is None
    asked = {**ROW, "bfp_pct": 45.0, "mmp_pct": 25.0}
    assert not np.array_equal(_ct(guided, asked), _ct(plain, asked))
    assert np.array_equal(_ct(guided, asked, composition=False), _ct(plain, asked))
    assert np.array_equal(_ct(guided, ROW), _ct(plain, ROW))  # no guide attribute in the row
    assert np.array_equal(_ct(guided, {**ROW, "bfp_pct": float("nan")}), _ct(plain, ROW))
    assert np.array_equal(_ct(guided, asked, sampler="ddim"), _ct(plain, asked, sampler="ddim"))


def test_a_guide_must_be_listed_sound_and_fit_the_latent(generators, tmp_path):
    _, guided, _ = generators
    root = write_untrained_generator(tmp_path / "unlisted")
    _add_guide(root, guided.guide, listed=False)
    with pytest.raises(CheckpointError, match=f"{GUIDE_FILE}: not listed in the manifest"):
        Generator.from_pretrained(root)

    root = write_untrained_generator(tmp_path / "corrupt")
    (root / GUIDE_FILE).write_bytes(b"\x00" * 64)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["files"][GUIDE_FILE] = sha256_file(root / GUIDE_FILE)
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="not a composition guide") as err:
        Generator.from_pretrained(root)
    assert "\n" not in str(err.value)

    root = write_untrained_generator(tmp_path / "other_size")
    _add_guide(root, LinearGuide(ATTRS, {999: (torch.zeros(3, 10), torch.zeros(3))}))
    with pytest.raises(CheckpointError, match="do not fit this generator's latent"):
        Generator.from_pretrained(root)


def test_vct_generate_steers_a_population_unless_told_not_to(generators, tmp_path):
    from vctcore.cli import main
    from vctcore.volume import read_ct

    _, _, guided_root = generators
    common = ["generate", "--checkpoint", str(guided_root), "--n", "1", "--seed", "5", "--sampler", "dpm++",
              "--device", "cpu", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "steered")]) == 0
    assert main([*common, "--out", str(tmp_path / "bins"), "--no-composition"]) == 0
    cohort = {k: json.loads((tmp_path / k / "cohort.json").read_text()) for k in ("steered", "bins")}
    assert cohort["steered"]["composition"] is True
    assert cohort["bins"]["composition"] is False
    ct = {k: np.asarray(read_ct(tmp_path / k / "patients" / "S0000" / "ct.nii.gz").data) for k in cohort}
    assert not np.array_equal(ct["steered"], ct["bins"])  # the default population gives bfp_pct and mmp_pct
