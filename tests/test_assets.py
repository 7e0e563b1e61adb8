"""Shipped files are found in one place (vctcore.assets): $VCT_ASSETS, then the installed package's files,
then the source tree; the generator used when none is named is $VCT_GENERATOR, else checkpoints/default."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vctcore import assets

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_asset_env(monkeypatch):
    monkeypatch.delenv(assets.ASSETS_ENV, raising=False)
    monkeypatch.delenv(assets.GENERATOR_ENV, raising=False)


def test_a_source_checkout_finds_its_own_files(no_asset_env):
    assert assets.source_tree() == REPO
    assert assets.shipped_generator() == REPO / "checkpoints" / "default"
    assert assets.default_generator() == assets.shipped_generator()
    assert assets.downstream_dir() == REPO / "checkpoints" / "downstream"
    assert assets.segmenter_dir() == REPO / "checkpoints" / "segmenter"
    assert assets.sex_classifier_dir() == REPO / "checkpoints" / "sex_classifier"
    assert {p.name for p in assets.population_specs()} >= {"adult_reference.yaml", "paper_id.yaml", "paper_ood.yaml"}
    assert assets.default_population() == REPO / "assets" / "populations" / "adult_reference.yaml"
    assert assets.population_spec("adult_reference") == assets.default_population()
    with pytest.raises(FileNotFoundError, match="no shipped population spec 'nope' .shipped: adult_reference, "):
        assets.population_spec("nope")
    assert (assets.trials_dir() / "audit_example.yaml").is_file()
    assert assets.asset("logo.svg").is_file()
    assert assets.package_file("measure/height_calibration.json").is_file()
    assert assets.checkpoint_dirs() == [REPO / "checkpoints"]


def test_lookup_order_env_then_installed_then_source(tmp_path, monkeypatch, no_asset_env):
    installed, env = tmp_path / "installed", tmp_path / "env"
    (installed / "assets" / "populations").mkdir(parents=True)
    (installed / "assets" / "populations" / "installed_only.yaml").write_text("name: x\n")
    (installed / "checkpoints" / "default").mkdir(parents=True)
    monkeypatch.setattr(assets, "INSTALLED_ROOT", installed)
    assert assets.roots() == [installed, REPO]
    assert [p.name for p in assets.population_specs()] == ["installed_only.yaml"]
    assert assets.shipped_generator() == installed / "checkpoints" / "default"
    # what the first root lacks comes from the next one
    assert assets.downstream_dir() == REPO / "checkpoints" / "downstream"

    (env / "assets" / "populations").mkdir(parents=True)
    monkeypatch.setenv(assets.ASSETS_ENV, str(env))
    assert assets.roots() == [env, installed, REPO]
    assert assets.populations_dir() == env / "assets" / "populations"
    assert assets.shipped_generator() == installed / "checkpoints" / "default"
    # a file nobody ships is named under the first root, so a message points somewhere real
    assert assets.shipped("assets/none.yaml") == env / "assets" / "none.yaml"


def test_vct_generator_names_the_default_generator(tmp_path, monkeypatch, no_asset_env):
    from vctcore.generator import Generator
    from vctcore.models.checkpoint import CheckpointError
    from vctcore.population_design import generator_support, list_generators

    monkeypatch.setenv(assets.GENERATOR_ENV, str(tmp_path / "nowhere"))
    assert assets.default_generator() == tmp_path / "nowhere"
    with pytest.raises(CheckpointError, match="nowhere: generator checkpoint directory does not exist"):
        Generator.from_pretrained()
    gen = tmp_path / "mine"
    gen.mkdir()
    (gen / "manifest.json").write_text(json.dumps({"support": {"age_years": {"min": 1, "max": 2}}}))
    monkeypatch.setenv(assets.GENERATOR_ENV, str(gen))
    assert generator_support() == {"age_years": {"min": 1, "max": 2}}
    assert list(list_generators())[:2] == ["VCT_GENERATOR", "default"]


def test_the_cli_honours_vct_generator(tmp_path):
    env = {**os.environ, "VCT_GENERATOR": str(tmp_path / "nowhere")}
    proc = subprocess.run([sys.executable, "-m", "vctcore.cli", "generate", "--n", "1", "--out", str(tmp_path / "c")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "nowhere: generator checkpoint directory does not exist" in proc.stderr


def test_an_installed_package_keeps_its_workspace_in_the_current_directory(tmp_path, monkeypatch):
    from vctcore import workspace

    monkeypatch.delenv("VCT_WORKSPACE", raising=False)
    assert workspace.workspace_root() == REPO / "workspace"
    monkeypatch.setattr(workspace, "source_tree", lambda: None)
    monkeypatch.chdir(tmp_path)
    assert workspace.workspace_root() == tmp_path / "workspace"
