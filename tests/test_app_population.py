"""The population designer: vctcore.population_design / population_plots on real shipped specs and small
hand-made tables, and the real page (views/population.py) through streamlit.testing in a temp workspace."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app_pages import open_page
from vctcore import population_design as design
from vctcore import population_plots as plots
from vctcore.population import BiasSplit, PopulationSpec, SpecError

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "populations"
SHIPPED = sorted(ASSETS.glob("*.yaml"))
PAGE = "views/population.py"
GOOD_CSV = (b"id,sex,age_years,height_cm,weight_kg,bfp_pct\n"
            b"a,F,30,160,60,30\nb,F,50,165,70,35\nc,M,40,180,85,22\nd,M,60,175,90,27\ne,F,70,158,66,38\n")


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch) -> Iterator[Path]:
    """An empty workspace for the page (VCT_WORKSPACE)."""
    root = tmp_path / "ws"
    root.mkdir()
    monkeypatch.setenv("VCT_WORKSPACE", str(root))
    yield root


@pytest.fixture(scope="module")
def reference() -> PopulationSpec:
    return PopulationSpec.from_yaml(ASSETS / "adult_reference.yaml")


# ---- vctcore: form <-> spec ----------------------------------------------------------------------
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_form_round_trip_equals_the_spec(path: Path) -> None:
    spec = PopulationSpec.from_yaml(path)
    form = design.form_from_spec(spec)
    assert design.form_to_dict(form) == spec.to_dict()
    assert design.spec_from_form(form) == spec
    assert all(isinstance(k, str) for k in form)


def test_form_edits_give_the_spec_they_say(reference: PopulationSpec) -> None:
    form = design.form_from_spec(reference)
    assert form["height_cm.per_sex"] and form["height_cm.num.mean.M"] == 175.4
    form["age_years.dist"] = "normal"  # a switch from uniform 20-85 keeps its range and centres the mean
    d = design.form_to_dict(form)["attributes"]["age_years"]
    assert d == {"dist": "normal", "mean": 52.5, "sd": 16.25, "low": 20.0, "high": 85.0}
    form["height_cm.num.sd.M"] = 7.0  # equal per-sex values are one number
    assert design.form_to_dict(form)["attributes"]["height_cm"]["sd"] == 7.0
    form["height_cm.per_sex"] = False  # per-sex off: the women's values for everyone
    assert design.form_to_dict(form)["attributes"]["height_cm"]["mean"] == 161.7
    form["sex.p_F"] = 0.3
    assert design.spec_from_form(form).attributes["sex"]["p"] == {"F": 0.3, "M": 0.7}
    form["split.on"] = True
    assert design.spec_from_form(form).split == BiasSplit("body_volume_l", "mmp_pct", (0.25, 1.0), intercept=-57)
    form["weight_kg.bmi.mean.F"] = None
    with pytest.raises(SpecError, match="attributes.weight_kg: distribution 'bmi' needs 'mean'"):
        design.spec_from_form(form)


@pytest.mark.parametrize("message, section", [
    ("attributes.height_cm.sd[F]: sd must be > 0, got 0", "height_cm"),
    ("attributes.sex.p: probabilities must be >= 0 and sum to 1, got {}", "sex"),
    ("constraints.bmi: low 40 is above high 20", "constraints"),
    ("split.coef: expected two numbers [a, b], not both zero, got [0, 0]", "split"),
    ("name: a population spec needs a non-empty name, got ''", "general"),
    ("population 'x': only 0 of 10000 draws satisfied the constraints", "general"),
])
def test_error_section_places_spec_errors(message: str, section: str) -> None:
    assert design.error_section(message) == section


# ---- vctcore: figures ----------------------------------------------------------------------------
def test_figures_have_one_trace_per_panel_and_sex_and_the_boundary() -> None:
    spec = PopulationSpec.from_yaml(ASSETS / "paper_id.yaml")
    df = spec.sample(200, seed=1)
    marg = plots.marginals_figure(df)
    assert len(marg.data) == 2 * len(plots.MARGINAL_COLUMNS)
    assert {t.name for t in marg.data} == {"women", "men"} and all(t.type == "histogram" for t in marg.data)
    women = [t for t in marg.data if t.name == "women"][0]
    np.testing.assert_allclose(women.x, df.loc[df.sex == "F", "age_years"])
    pair = plots.pair_figure(df)
    assert [t.type for t in pair.data] == ["splom", "splom"]
    assert len(pair.data[0].dimensions) == len(plots.PAIR_COLUMNS)
    before = design.without_split(spec).sample(400, seed=1)
    fig = plots.split_figure(before, spec.split)
    assert [t.name for t in fig.data] == ["removed by the split", "kept: women", "kept: men", "boundary"]
    kept = sum(len(t.x) for t in fig.data[1:3])
    assert kept == int(spec.split.inside(before).sum()) and kept + len(fig.data[0].x) == 400
    line = fig.data[-1]
    (a, b), c = spec.split.coef, spec.split.intercept
    np.testing.assert_allclose(a * np.asarray(line.x) + b * np.asarray(line.y) + c, 0, atol=1e-9)


def test_vertical_boundary_when_y_has_no_weight() -> None:
    x, y = plots.boundary_line(BiasSplit("age_years", "bmi", (2.0, 0.0), intercept=-100), (0, 10), (15, 40))
    assert list(x) == [50.0, 50.0] and list(y) == [15.0, 40.0]


# ---- vctcore: generator support ------------------------------------------------------------------
def test_support_shares_on_a_hand_made_table() -> None:
    support = {"sex": {"categories": ["F", "M"]}, "age_years": {"min": 20, "max": 80},
               "height_cm": {"min": 150, "max": 190}, "weight_kg": {"min": 40, "max": 120}}
    df = pd.DataFrame({"sex": ["F", "M", "F", "M", "F", "M", "F", "M"],
                       "age_years": [19, 25, 30, 81, 50, 60, 70, 85],  # 3 of 8 outside
                       "height_cm": [160, 170, 195, 175, 165, 180, 150, 190],  # 1 of 8 (195)
                       "weight_kg": [60, 70, 80, 90, 100, 110, 120, 65]})  # none
    table = design.support_table(df, support).set_index("attribute")
    assert table.loc["age_years", "outside"] == 3 and table.loc["age_years", "share outside"] == 3 / 8
    assert table.loc["height_cm", "outside"] == 1 and table.loc["weight_kg", "outside"] == 0
    lines = design.support_warnings(df, support)
    assert lines[0] == "age_years: 37.5 % of patients (3 of 8) lie outside the generator's training range 20-80 years"
    assert lines[1].startswith("height_cm: 12.5 % of patients (1 of 8)")
    assert lines[2].startswith("50.0 % of patients (4 of 8) have at least one attribute outside")
    assert len(lines) == 3
    assert design.support_warnings(df.iloc[[1, 4]], support) == []


def test_generator_support_reads_the_manifest_only(tmp_path: Path) -> None:
    support = design.generator_support()  # checkpoints/default, no networks loaded
    assert set(support) >= {"sex", "age_years", "height_cm", "weight_kg"}
    assert support["sex"]["categories"] == ["F", "M"]
    (tmp_path / "manifest.json").write_text(json.dumps({"support": {"age_years": {"min": 1, "max": 2}}}))
    assert design.generator_support(tmp_path / "manifest.json") == {"age_years": {"min": 1, "max": 2}}
    with pytest.raises(ValueError, match="no manifest.json with a training support"):
        design.generator_support(tmp_path / "nowhere")
    assert "default" in design.list_generators()


# ---- vctcore: uploads, fitting and saving --------------------------------------------------------
@pytest.mark.parametrize("name, content, message", [
    ("p.txt", GOOD_CSV, "p.txt: not a CSV file"),
    ("p.csv", b"", "p.csv: the file is empty"),
    ("p.csv", b"sex,age\n\xff\xfe", "p.csv: not a UTF-8 text CSV"),
    ("p.csv", b"a,b\x00\n", "p.csv: not a UTF-8 text CSV (NUL byte at byte 3)"),
    ("p.csv", b"x" * (design.MAX_UPLOAD_BYTES + 1), "above the upload limit of 5 MB"),
    ("p.csv", b"sex,age_years\nF,40\n", "p.csv: missing column(s) height_cm, weight_kg"),
    ("p.csv", GOOD_CSV.replace(b"165", b"tall"), "p.csv: height_cm: row(s) b have non-numeric"),
    ("p.csv", GOOD_CSV.replace(b"165", b"300"), "p.csv: height_cm: row(s) b have value(s) 300 outside the allowed"),
])
def test_upload_errors_name_the_file_and_the_problem(name: str, content: bytes, message: str) -> None:
    with pytest.raises(design.UploadError) as err:
        design.read_population_upload(name, content)
    assert message in str(err.value) and "\n" not in str(err.value) and "vct_upload_" not in str(err.value)


def test_spec_fitted_to_a_csv() -> None:
    got = design.read_population_upload("clinic.csv", GOOD_CSV)
    assert got.measured == ("bfp_pct",) and len(got.table) == 5
    assert any("mmp_pct" in n for n in got.notes)
    spec = design.spec_from_table(got.table, name="clinic 2024", measured=got.measured)
    assert spec.name == "clinic_2024"
    assert spec.attributes["sex"]["p"] == {"F": 0.6, "M": 0.4}
    h = spec.attributes["height_cm"]
    assert h["mean"] == {"F": 161.0, "M": 177.5} and (h["low"], h["high"]) == (158.0, 180.0)
    assert spec.attributes["weight_kg"]["dist"] == "bmi" and spec.attributes["bfp_pct"]["dist"] == "truncnormal"
    assert spec.attributes["mmp_pct"] == {"dist": "relation"}
    df = spec.sample(50, seed=0)
    assert df["height_cm"].between(158, 180).all()


def test_save_is_atomic_checks_the_name_and_does_not_overwrite(tmp_path: Path, reference: PopulationSpec) -> None:
    path = design.save_spec(reference, root=tmp_path)
    assert path == tmp_path / "populations" / "adult_reference.yaml"
    assert PopulationSpec.from_yaml(path) == reference
    assert [p.name for p in path.parent.iterdir()] == ["adult_reference.yaml"]  # no temp file left
    with pytest.raises(ValueError, match="already exists"):
        design.save_spec(reference, root=tmp_path)
    design.save_spec(reference, root=tmp_path, overwrite=True)
    for bad in ("../evil", "has space", "", "x" * 65):
        with pytest.raises(ValueError, match="use 1 to 64 letters"):
            design.check_save_name(bad)
    assert "workspace/adult_reference" in design.list_specs(tmp_path)


# ---- the page --------------------------------------------------------------------------------------
def _errors(at) -> list[str]:
    return [e.value for e in at.error]


def _charts(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _set(at, key: str, value) -> None:
    at.number_input(key=f"pop_f_{key}").set_value(value).run()
    assert not at.exception, at.exception


def test_page_loads_a_shipped_spec_and_shows_its_figures(workspace: Path) -> None:
    at = open_page(PAGE)
    assert at.selectbox(key="pop_source").value == "shipped/adult_reference"
    assert at.session_state["pop_f_height_cm.num.mean.M"] == 175.4
    assert len(at.get("plotly_chart")) == 2 and not _errors(at)
    at.selectbox(key="pop_source").set_value("shipped/paper_ood").run()
    assert not at.exception, at.exception
    charts = _charts(at)
    assert len(charts) == 3
    assert [t["name"] for t in charts[2]["data"]][-1] == "boundary"
    assert at.checkbox(key="pop_f_split.on").value and at.number_input(key="pop_f_split.intercept").value == -57


def test_invalid_parameter_shows_the_spec_error_not_a_traceback(workspace: Path) -> None:
    at = open_page(PAGE)
    _set(at, "height_cm.num.sd.M", -2.0)
    assert _errors(at) == ["attributes.height_cm.sd[M]: sd must be > 0, got -2"]
    assert not at.get("plotly_chart")
    _set(at, "height_cm.num.sd.M", 7.6)
    assert not _errors(at) and len(at.get("plotly_chart")) == 2
    at.text_input(key="pop_f_name").set_value("").run()
    assert _errors(at) == ["name: a population spec needs a non-empty name, got ''"]


def test_hidden_parameters_survive_a_distribution_switch(workspace: Path) -> None:
    at = open_page(PAGE)
    at.selectbox(key="pop_f_height_cm.dist").set_value("uniform").run()
    assert not at.exception and not _errors(at)
    at.selectbox(key="pop_f_height_cm.dist").set_value("truncnormal").run()
    assert at.number_input(key="pop_f_height_cm.num.mean.M").value == 175.4
    assert at.number_input(key="pop_f_height_cm.num.sd.F").value == 7.0


def test_save_writes_a_spec_that_reads_back_and_samples(workspace: Path) -> None:
    at = open_page(PAGE)
    at.text_input(key="pop_f_name").set_value("older_adults").run()
    _set(at, "age_years.num.low.F", 60.0)
    at.button(key="pop_save").click().run()
    assert not at.exception, at.exception
    path = workspace / "populations" / "older_adults.yaml"
    assert any(str(path) in s.value for s in at.success)
    spec = PopulationSpec.from_yaml(path)
    assert spec.name == "older_adults" and spec.attributes["age_years"] == {"dist": "uniform", "low": 60.0, "high": 85.0}
    assert spec.sample(20, seed=0)["age_years"].min() >= 60
    at.button(key="pop_save").click().run()
    assert any("already exists" in e for e in _errors(at))
    at.text_input(key="pop_f_name").set_value("older adults").run()
    at.button(key="pop_save").click().run()
    assert any(e.startswith("population name 'older adults': use 1 to 64") for e in _errors(at))
    assert "workspace/older_adults" in at.selectbox(key="pop_source").options


@pytest.mark.parametrize("bad, message", [
    (b"tall", "height_cm: row(s) b have non-numeric or missing value(s) 'tall'"),
    (b"300", "height_cm: row(s) b have value(s) 300 outside the allowed range [130, 215] cm"),
])
def test_csv_upload_with_a_bad_value_shows_one_specific_error(workspace: Path, bad: bytes, message: str) -> None:
    at = open_page(PAGE)
    at.radio(key="pop_how").set_value("a CSV of patients").run()
    at.file_uploader(key="pop_upload").set_value(("clinic.csv", GOOD_CSV.replace(b"165", bad), "text/csv")).run()
    assert not at.exception, at.exception
    assert len(_errors(at)) == 1 and message in _errors(at)[0] and "clinic.csv" in _errors(at)[0]
    at.file_uploader(key="pop_upload").set_value(("clinic.csv", GOOD_CSV, "text/csv")).run()
    assert not at.exception and not _errors(at)
    assert at.text_input(key="pop_f_name").value == "clinic"
    assert at.number_input(key="pop_f_sex.p_F").value == 0.6
    assert len(at.get("plotly_chart")) == 2


def test_population_outside_the_generator_support_is_named_with_its_share(workspace: Path,
                                                                           reference: PopulationSpec) -> None:
    at = open_page(PAGE)
    _set(at, "age_years.num.low.F", 18.0)
    _set(at, "age_years.num.high.F", 30.0)
    form = design.form_from_spec(reference)
    form["age_years.num.low.F"], form["age_years.num.high.F"] = 18.0, 30.0
    df = design.spec_from_form(form).sample(300, seed=0)
    lo = design.generator_support()["age_years"]["min"]
    share = float((df["age_years"] < lo).mean())
    assert 0.05 < share < 0.3
    warnings = [w.value for w in at.warning]
    assert f"age_years: {100 * share:.1f} % of patients ({int(round(share * 300))} of 300) lie outside" in warnings[0]


def test_two_sessions_do_not_share_state(workspace: Path) -> None:
    one, two = open_page(PAGE), open_page(PAGE)
    _set(one, "height_cm.num.mean.F", 150.0)
    one.text_input(key="pop_f_name").set_value("short").run()
    two.selectbox(key="pop_source").set_value("shipped/paper_id").run()
    _set(two, "height_cm.num.sd.F", -1.0)
    one.run()
    two.run()
    assert one.number_input(key="pop_f_height_cm.num.mean.F").value == 150.0
    assert not _errors(one) and len(one.get("plotly_chart")) == 2
    assert two.number_input(key="pop_f_height_cm.num.mean.F").value == 161.7
    assert two.text_input(key="pop_f_name").value == "paper_id" and _errors(two)
    assert one.selectbox(key="pop_source").value == "shipped/adult_reference"
    one.button(key="pop_save").click().run()
    _set(two, "height_cm.num.sd.F", 7.0)
    two.button(key="pop_save").click().run()
    saved = {p.stem: PopulationSpec.from_yaml(p) for p in (workspace / "populations").glob("*.yaml")}
    assert set(saved) == {"short", "paper_id"}
    assert saved["short"].attributes["height_cm"]["mean"]["F"] == 150.0 and saved["short"].split is None
    assert saved["paper_id"].attributes["height_cm"]["mean"]["F"] == 161.7 and saved["paper_id"].split is not None
