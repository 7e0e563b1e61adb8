"""Trial configurations, the biased split and audit populations: parsing, checks and their messages."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from vctcore.trial.config import TrialConfigError, load_config, parse_config
from vctcore.trial.populations import PopulationError, outside_support, population_rows
from vctcore.trial.config import PopulationSource, SplitSettings
from vctcore.trial.split import SplitError, assign_roles, draw_order, resolve_split

REPO = Path(__file__).resolve().parents[1]
TRIALS = REPO / "assets" / "trials"


@pytest.mark.parametrize("name", ["paper_bfp", "paper_mmp", "audit_example"])
def test_shipped_configs_parse(name: str) -> None:
    cfg = load_config(TRIALS / f"{name}.yaml")
    assert cfg.name == name
    if cfg.design == "paper":
        assert cfg.sizes == {"train": 200, "id": 75, "ood": 75}
        assert cfg.phantoms.population.is_file()
        assert cfg.generator.oversample_or(1) == 2
    else:
        assert cfg.model.path.name == "bfp_reference"
        assert cfg.targets[0].csv.is_file() and cfg.reference.spec.is_file()


def _paper(**changes) -> dict:
    d = yaml.safe_load((TRIALS / "paper_bfp.yaml").read_text())
    d.update(changes)
    return d


@pytest.mark.parametrize("change, message", [
    ({"colour": "red"}, "unknown key 'colour'"),
    ({"sizes": {"train": 10, "valid": 3}}, "unknown key 'sizes.valid'"),
    ({"split": {"x": "body_volume_l", "y": "mmp_pct", "coef": [1, 1], "intercept": 1, "ood_fraction": 0.2}},
     "exactly one of 'intercept'"),
    ({"split": {"x": "shoe_size", "y": "mmp_pct", "coef": [1, 1], "intercept": 1}}, "split.x must be"),
    ({"target": "iq"}, "target must be bfp_pct | mmp_pct"),
    ({"statistics": {"acceptable_below": 4, "significant_above": 3}}, "must not exceed"),
    ({"model": {"path": "x", "reference": {}}}, "exactly one of 'path'"),
    ({"design": "rct"}, "design must be paper | audit"),
])
def test_config_errors_name_the_key(change: dict, message: str) -> None:
    with pytest.raises(TrialConfigError, match=message):
        parse_config(_paper(**change), base=TRIALS)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(TrialConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(TrialConfigError, match="not valid YAML"):
        load_config(bad)


def _pool(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sex = np.where(rng.random(n) < 0.5, "F", "M")
    vol = np.where(sex == "M", 85.0, 70.0) + rng.normal(0, 12, n)
    mmp = np.where(sex == "M", 42.0, 34.0) + rng.normal(0, 4, n)
    return pd.DataFrame({"id": [f"P{i:04d}" for i in range(n)], "sex": sex, "body_volume_l": vol, "mmp_pct": mmp})


def test_ood_fraction_is_per_sex() -> None:
    pool = _pool()
    split = resolve_split(SplitSettings("body_volume_l", "mmp_pct", (0.25, 1.0), ood_fraction=0.25), pool)
    ood = split.in_ood(pool)
    for s in ("F", "M"):
        share = ood[pool["sex"] == s].mean()
        assert abs(share - 0.25) < 0.03
    # a fixed intercept: the score is the hand-computed line
    fixed = resolve_split(SplitSettings("body_volume_l", "mmp_pct", (0.25, 1.0), intercept=-57.0), pool)
    np.testing.assert_allclose(fixed.score(pool), 0.25 * pool["body_volume_l"] + pool["mmp_pct"] - 57.0)


def test_roles_follow_sizes_and_a_fixed_order() -> None:
    pool = _pool()
    split = resolve_split(SplitSettings("body_volume_l", "mmp_pct", (0.25, 1.0), ood_fraction=0.3), pool)
    roles = assign_roles(pool, split, {"train": 100, "id": 20, "ood": 20}, seed=3)
    counts = roles["role"].value_counts()
    assert counts["train"] == 100 and counts["id_test"] == 20 and counts["ood_test"] == 20
    assert (roles.loc[roles["role"] == "ood_test", "side"] == "OOD").all()
    assert (roles.loc[roles["role"].isin(["train", "id_test"]), "side"] == "ID").all()
    # the draw order depends on the ids, not on the table's row order
    shuffled = pool.sample(frac=1.0, random_state=1)
    again = assign_roles(shuffled, split, {"train": 100, "id": 20, "ood": 20}, seed=3)
    assert dict(zip(roles["id"], roles["role"])) == dict(zip(again["id"], again["role"]))
    assert list(pool["id"].iloc[draw_order(pool["id"], 3)][:5]) != list(pool["id"].iloc[draw_order(pool["id"], 4)][:5])


def test_split_too_small_is_refused() -> None:
    pool = _pool(60)
    split = resolve_split(SplitSettings("body_volume_l", "mmp_pct", (0.25, 1.0), ood_fraction=0.2), pool)
    with pytest.raises(SplitError, match="OOD side .* sizes ask for 30"):
        assign_roles(pool, split, {"train": 10, "id": 10, "ood": 30})
    with pytest.raises(SplitError, match="ID side"):
        assign_roles(pool, split, {"train": 45, "id": 10, "ood": 5})


def _csv(tmp_path: Path, text: str) -> PopulationSource:
    p = tmp_path / "pop.csv"
    p.write_text(text)
    return PopulationSource(name="clinic", csv=p)


def test_csv_population_fills_relations_and_flags_support(tmp_path: Path) -> None:
    src = _csv(tmp_path, "id,sex,age_years,height_cm,weight_kg,ward,bfp_pct\n"
                         "a,F,70,158,70,x,\nb,m,40,180,82,y,21.5\nc,F,99,150,45,z,\n")
    df, warnings = population_rows(src, seed=0, support={"age_years": {"min": 20, "max": 85}})
    assert list(df["id"]) == ["a", "b", "c"] and list(df["sex"]) == ["F", "M", "F"]
    assert "ward" not in df.columns
    assert df.loc[1, "bfp_pct"] == 21.5 and np.isfinite(df["bfp_pct"]).all()
    assert np.isfinite(df[["mmp_pct", "bone_density_hu", "body_volume_l"]].to_numpy(float)).all()
    assert list(df["outside_support"]) == [False, False, True]
    assert any("filled from published relations" in w for w in warnings)
    assert any("1 of 3 row(s) lie outside" in w for w in warnings)


@pytest.mark.parametrize("text, message", [
    ("sex,age_years,height_cm,weight_kg\nF,70,abc,60\n", "height_cm: row\\(s\\) R0000 have non-numeric"),
    ("sex,age_years,height_cm,weight_kg\nF,70,160,900\n", "weight_kg: .* outside the allowed range"),
    ("sex,age_years,weight_kg\nF,70,60\n", "missing column\\(s\\) height_cm"),
    ("sex,age_years,height_cm,weight_kg\nX,70,160,60\n", "sex: .* allowed categories"),
])
def test_csv_population_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PopulationError, match=message):
        population_rows(_csv(tmp_path, text), seed=0)


def test_outside_support_by_category_and_range() -> None:
    df = pd.DataFrame({"sex": ["F", "X"], "height_cm": [150.0, 220.0]})
    got = outside_support(df, {"sex": {"categories": ["F", "M"]}, "height_cm": {"min": 140, "max": 200}})
    assert list(got) == [False, True]


def test_executor_key_names_where_patients_are_made(tmp_path: Path) -> None:
    from vctcore.executors import ExecutorSpec
    from vctcore.trial.config import trial_executor
    from vctcore.trial.run import _pin

    assert parse_config(_paper(), base=TRIALS).executor is None
    assert trial_executor(parse_config(_paper(workers=3), base=TRIALS)) == ExecutorSpec("local", 3)
    assert parse_config(_paper(executor="ray"), base=TRIALS).executor == ExecutorSpec("ray", 0)
    cfg = parse_config(_paper(executor={"kind": "ray", "address": "auto", "workers": 4}), base=TRIALS)
    assert cfg.executor == ExecutorSpec("ray", 4, "auto")
    assert parse_config(_paper(executor={"kind": "local"}, workers=3), base=TRIALS).executor == ExecutorSpec("local", 3)
    # the executor changes no result: a trial directory is not pinned to it
    _pin(parse_config(_paper(), base=TRIALS), tmp_path)
    _pin(cfg, tmp_path)


@pytest.mark.parametrize("value, message", [
    ("dask", "executor.kind must be local | ray"),
    ({"kind": "ray", "nodes": 2}, "unknown key 'executor.nodes'"),
    ({"address": "auto"}, "missing key 'executor.kind'"),
    ({"kind": "local", "address": "auto"}, "executor.address must be a Ray address"),
    ({"kind": "ray", "workers": -1}, "executor.workers must be an integer >= 0"),
])
def test_executor_errors_name_the_key(value, message: str) -> None:
    with pytest.raises(TrialConfigError, match=message):
        parse_config(_paper(executor=value), base=TRIALS)
