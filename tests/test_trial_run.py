"""A tiny trial end to end with the default world's real parts: 8 phantoms, the shipped generator, a
reference model trained for two epochs, the CLI; then resume, the --fail-on gate and bad input.

The tiny world and its paper trial are shared fixtures (tests/trial_fixtures.py, conftest.py).
The audit's populations are CSV rows with the test patients' attributes, so its synthetic patients
come from the patient store without being made again (a synthetic patient is never made twice, across
trials). The statistics that need more patients (forest attribution, subgroups) are skipped with a
note; they are tested on their own in test_trial_stats/attribution/subgroups.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from vctcore.trial.result import PREDICTION_COLUMNS, TrialResult

from trial_fixtures import REPO, paper_config, population_csvs, vct


def test_tiny_tiny_paper_trial_writes_a_full_trial_directory(tiny_paper_trial) -> None:
    out, proc = tiny_paper_trial
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = TrialResult.load(out)
    preds = result.predictions
    assert set(PREDICTION_COLUMNS) <= set(preds.columns)
    assert set(preds["sample_type"]) >= {"real", "reconstructed", "synthetic"}
    assert set(preds["population"]) == {"ID", "OOD"}
    real = preds[preds["sample_type"] == "real"]
    assert len(real) == 4 and (preds["abs_error"] - (preds["y_pred"] - preds["y_true"]).abs()).abs().max() < 1e-9
    # every synthetic and reconstructed image names the real patient it was made from
    made = preds[preds["sample_type"].isin(["synthetic", "reconstructed"])]
    assert set(made["source_id"]) == set(real["patient_id"]) and len(made) == 8
    assert made["patient_id"].is_unique and not set(made["patient_id"]) & set(real["patient_id"])
    # all 8 attributes measured (or recorded) on every sample type
    assert preds[["sex", "age_years", "height_cm", "weight_kg", "bfp_pct", "body_volume_l", "mmp_pct"]].notna().all().all()
    t1 = result.tables["table1"]
    assert {"real", "reconstructed", "synthetic", "real_weighted"} <= set(t1["sample_type"])
    row = t1[(t1["population"] == "ID") & (t1["sample_type"] == "real")].iloc[0]
    assert row["mae"] == pytest.approx(real[real["population"] == "ID"]["abs_error"].mean())
    s = result.summary
    assert s["provenance"]["model"]["weights_sha256"] and s["provenance"]["generator"]["sha256"]
    assert set(s["provenance"]["stage_seconds"]) >= {"real_cohort", "measure_real", "train_model", "reconstruct",
                                                   "generate", "measure_generated", "predict", "statistics"}
    assert s["split"]["intercepts"].keys() == {"F", "M"}
    w = s["importance_weighting"]  # the weighted baseline says how many patients it rests on
    assert w["n"] == 2 and 1.0 <= w["effective_n"] <= 2.0 + 1e-9 and 0.5 <= w["max_weight_share"] <= 1.0
    assert any("effective patients" in m for m in s["warnings"])  # 2 ID patients: always under 10
    assert (out / "model" / "card.yaml").is_file() and not (out / "progress.json").exists()
    assert "MAE" in proc.stdout
    # generated twins against their sources: one row per population and generated type, drift per attribute
    twins = result.tables["faithful_twins"]
    assert set(zip(twins["population"], twins["sample_type"])) == {(p, t) for p in ("ID", "OOD")
                                                                   for t in ("reconstructed", "synthetic")}
    assert (twins["n_faithful"] <= twins["n"]).all() and twins["n"].sum() == len(made)
    drift = result.tables["twin_drift"]
    assert {"bfp_pct", "mmp_pct", "bone_density_hu"} <= set(drift["attribute"]) and len(s["faithful_twins"]) == 4


def test_rerun_resumes_from_caches(tiny_paper_trial) -> None:
    out, _ = tiny_paper_trial
    cfg = json.loads((out / "config.json").read_text())["config"]
    proc = vct("trial", "--config", str(Path(cfg["source"])), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    seconds = TrialResult.load(out).summary["provenance"]["stage_seconds"]
    # nothing is generated, reconstructed or trained again
    assert seconds["generate"] < 2 and seconds["reconstruct"] < 2 and seconds["train_model"] < 5


def test_other_config_into_the_same_directory_is_refused(tiny_paper_trial, tiny_world, tmp_path: Path) -> None:
    out, _ = tiny_paper_trial
    other = paper_config(tmp_path, **tiny_world, name="other", sizes={"train": 3, "id": 2, "ood": 2})
    proc = vct("trial", "--config", str(other), "--out", str(out))
    assert proc.returncode == 2 and "holds another trial" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert (out / "trial.json").is_file()


def test_split_too_small_exits_2(tmp_path: Path, tiny_paper_trial, tiny_world) -> None:
    out, _ = tiny_paper_trial
    cache = json.loads((out / "config.json").read_text())["config"]["cache"]
    cfg = paper_config(tmp_path, **tiny_world, sizes={"train": 2, "id": 2, "ood": 9}, cache=cache)
    proc = vct("trial", "--config", str(cfg), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2, proc.stderr
    assert "OOD side" in proc.stderr and "sizes ask for 9" in proc.stderr


def test_unknown_key_exits_2(tmp_path: Path, tiny_world) -> None:
    cfg = paper_config(tmp_path, **tiny_world, colour="red")
    proc = vct("trial", "--config", str(cfg), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "unknown key 'colour'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_tiny_audit_reuses_patients_names_populations_and_gates(tiny_paper_trial, tiny_world, tmp_path: Path) -> None:
    out, _ = tiny_paper_trial
    cache = json.loads((out / "config.json").read_text())["config"]["cache"]
    population_csvs(out, tmp_path)
    cfg = {"name": "tiny_audit", "design": "audit", "model": {"path": str(out / "model")},
           "reference_population": {"name": "adults", "csv": "adults.csv"},
           "target_populations": [{"name": "clinic", "csv": "clinic.csv"}],
           "generator": tiny_world["generator"],
           "statistics": {"n_boot": 200, "acceptable_below": 0.0, "significant_above": 0.0}, "cache": cache}
    path = tmp_path / "audit.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = vct("trial", "--config", str(path), "--out", str(tmp_path / "audit"), "--quiet",
                "--fail-on", "significant")
    # thresholds of 0 points make every population a significant degradation: the gate must fire
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "--fail-on significant" in proc.stderr
    result = TrialResult.load(tmp_path / "audit")
    assert result.summary["provenance"]["stage_seconds"]["generate"] < 5  # every patient came from the store
    pops = result.tables["populations"].set_index("population")
    assert list(pops.index) == ["adults", "clinic"] and (pops["n"] == 2).all()
    preds = result.predictions
    assert len(preds) == 4 and preds["source_id"].str.match(r"^(adults|clinic):P\d{4}$").all()
    assert preds["outside_support"].dtype == bool
    # the same synthetic patients as the paper trial's, measured the same way
    paper = TrialResult.load(out).predictions
    paper = paper[paper["sample_type"] == "synthetic"].set_index("patient_id")
    assert set(preds["patient_id"]) <= set(paper.index)
    assert paper.loc[preds["patient_id"], "y_true"].to_numpy() == pytest.approx(preds["y_true"].to_numpy())


@pytest.mark.parametrize("case", ["not_onnx", "card_missing_field"])
def test_audit_with_a_bad_model_exits_2_before_any_work(case: str, tmp_path: Path) -> None:
    from dataclasses import replace

    from vctcore.downstream.card import read_card_file, sha256_file, write_card

    model = tmp_path / "model"
    model.mkdir()
    (model / "model.onnx").write_text("this is not a network\n")
    card = read_card_file(REPO / "checkpoints" / "downstream" / "bfp_reference" / "card.yaml")
    write_card(replace(card, format="onnx", weights="model.onnx", weights_sha256=sha256_file(model / "model.onnx"),
                       backbone=None), model)
    if case == "card_missing_field":
        text = (model / "card.yaml").read_text().splitlines()
        (model / "card.yaml").write_text("\n".join(line for line in text if not line.startswith("unit:")) + "\n")
    (tmp_path / "rows.csv").write_text("sex,age_years,height_cm,weight_kg\nF,50,165,70\nM,60,178,85\n")
    cfg = {"name": "bad_model", "design": "audit", "model": {"path": str(model)},
           "reference_population": {"name": "a", "csv": "rows.csv"},
           "target_populations": [{"name": "b", "csv": "rows.csv"}], "cache": str(tmp_path / "cache")}
    (tmp_path / "audit.yaml").write_text(yaml.safe_dump(cfg))
    proc = vct("trial", "--config", str(tmp_path / "audit.yaml"), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = proc.stderr.strip()
    assert len(line.splitlines()) == 1
    assert ("is not an ONNX model" in line) if case == "not_onnx" else ("unit" in line and "card" in line)
    assert not (tmp_path / "cache" / "synthetic").exists()
