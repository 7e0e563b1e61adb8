"""The PDF bias report (vctcore.report, ``vct report``), read back with real PDF readers (pdftotext for the
text, pdfplumber for metadata and positions).

The paper report is built through the CLI from the session's tiny paper trial (tests/trial_fixtures.py)
and from a stored real small trial (tests/data/trials/paper_bfp_small, every table present); the audit
report from an audit-design trial directory written here from the tiny trial's synthetic images by the
audit's own statistics (vctcore.trial.audit.population_table), without examples/ so the report's "no
example slices" path is exercised. The table builder is tested on its own on long and
wide tables. Nothing here reads workspace/.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pdfplumber
import pytest

from trial_fixtures import vct
from vctcore.report import ReportError, render_pages_png, write_report
from vctcore.report.style import FRAME_WIDTH, MARGIN_X
from vctcore.trial.result import TrialResult

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def pdf_text(pdf: Path) -> str:
    """All pages' text as ``pdftotext`` (poppler) reads it, no-break spaces as spaces, the report's
    generation time dropped."""
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    text = text.replace("\u00a0", " ")
    return re.sub(r"Report generated \S+ \S+ UTC", "Report generated -", text)


def flat(text: str) -> str:
    """Text with every run of whitespace (line breaks in wrapped cells and paragraphs) as one space."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def paper_report(tiny_paper_trial, tmp_path_factory) -> tuple[Path, Path]:
    """(tiny paper trial directory, its report written by ``vct report``)."""
    out, proc = tiny_paper_trial
    assert proc.returncode == 0, proc.stderr[-2000:]
    pdf = tmp_path_factory.mktemp("report") / "report.pdf"
    r = vct("report", str(out), "--out", str(pdf), "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == f"report written: {pdf}"
    return out, pdf


def test_metadata_pages_and_sections(paper_report) -> None:
    out, pdf = paper_report
    with pdfplumber.open(pdf) as doc:
        meta = doc.metadata
        n_pages = len(doc.pages)
    assert meta["Title"] == "Bias report: tiny_paper" and meta["Author"].startswith("vct")
    assert 8 <= n_pages <= 30
    text = flat(pdf_text(pdf))
    for heading in ("Contents", "1 Executive summary", "2 Methods in brief", "3 Results", "4 Figures",
                    "5 Limitations", "Appendix", "Example CT slices", "Generator fidelity", "Checksums"):
        assert heading in text, heading
    assert "digital-human phantoms" in text and "not patients" in text


def test_verdicts_and_table_values_are_the_trials(paper_report) -> None:
    out, pdf = paper_report
    text = flat(pdf_text(pdf))
    result = TrialResult.load(out)
    assert "ID test population" in text and "OOD test population" in text
    words = set(text.split())
    for head in ("Population", "Attr. dist.", "Sample type", "MAE 95% CI", "Z vs real", "Verdict"):
        assert set(head.split()) <= words, head  # header cells may wrap
    for v in result.summary["verdicts"]:
        if v["n"]:
            assert f"[{v['mae_low']:.2f}, {v['mae_high']:.2f}]" in text
            assert f"{v['mae']:.2f}" in text and v["verdict"] in text
    t1 = result.tables["table1"]
    for z in t1["z"].dropna():
        assert f"{z:.2f}" in text
    # what a tiny trial skipped is named with the trial's own reason
    for w in result.summary["warnings"]:
        assert " ".join(w.split()[:4]) in text


def test_same_trial_gives_the_same_text_and_replaces_the_old_file(paper_report, tmp_path: Path) -> None:
    out, pdf = paper_report
    again = tmp_path / "again.pdf"
    again.write_text("an older report")
    calls = []
    assert write_report(out, again, progress=lambda d, t, label: calls.append((d, t))) == again
    stamp = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC")  # the minute it was written may differ
    assert stamp.sub("", pdf_text(again)) == stamp.sub("", pdf_text(pdf))
    assert calls and calls[-1][0] == calls[-1][1]
    assert [p.name for p in tmp_path.iterdir()] == ["again.pdf"]  # no temporary file left


def test_nothing_outside_the_text_frame(paper_report) -> None:
    _, pdf = paper_report
    with pdfplumber.open(pdf) as doc:
        for page in doc.pages:
            for w in page.extract_words():
                assert w["x0"] >= MARGIN_X - 1 and w["x1"] <= MARGIN_X + FRAME_WIDTH + 1, (page.page_number, w)
            for im in page.images:
                assert im["x0"] >= MARGIN_X - 1 and im["x1"] <= MARGIN_X + FRAME_WIDTH + 1


def test_trial_writes_example_slices(paper_report) -> None:
    from vctcore.trial.examples import read_examples

    out, _ = paper_report
    examples, skipped = read_examples(out)
    assert not skipped and {ex["population"] for ex in examples} == {"ID", "OOD"}
    assert {ex["sample_type"] for ex in examples} == {"real", "reconstructed", "synthetic"}
    for ex in examples:
        assert ex["hu"].dtype == np.int16 and ex["seg"].dtype == np.uint8 and ex["hu"].shape == ex["seg"].shape
        assert ex["hu"].shape[0] > ex["hu"].shape[1]  # rows run superior -> inferior along the body
        assert ex["seg"].max() > 0 and len(ex["spacing_mm"]) == 2
    # per source patient: the real image, its reconstruction and its synthetic twin
    by_source = pd.DataFrame(examples).groupby("source_id")["sample_type"].apply(set)
    assert all(s == {"real", "reconstructed", "synthetic"} for s in by_source)


def test_page_previews(paper_report) -> None:
    _, pdf = paper_report
    (png,) = render_pages_png(pdf, dpi=30, pages=[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


STORED = Path(__file__).parent / "data" / "trials" / "paper_bfp_small"


def test_report_of_a_stored_small_trial(tmp_path: Path) -> None:
    """A real finished paper trial (ID 25 / OOD 25, tests/data) with every table: forest attribution, SHAP,
    subgroup scan; stored without examples/."""
    trial = tmp_path / "paper_bfp_small"
    shutil.copytree(STORED, trial)
    pdf = write_report(trial, tmp_path / "small.pdf")
    text = flat(pdf_text(pdf))
    result = TrialResult.load(trial)
    for r in result.tables["table3"].itertuples():
        assert f"{r.mae:.2f} \u00b1 {r.sd:.2f}" in text
    for r in result.tables["importance_correlation"].itertuples():
        assert f"{r.r_impurity:.3f}" in text and f"{r.r_permutation:.3f}" in text
    worst = result.tables["subgroups"].sort_values("effect", ascending=False).iloc[0]
    assert " ".join(worst["slice"].split()[:4]) in text  # the cell wraps: its first line
    assert "is not in this trial" not in text  # every table is there
    assert "holds no example slices" in text and "Generator fidelity" in text
    for kind in ("Absolute error of every image", "Importance of each attribute", "SHAP values"):
        assert kind in text
    with pdfplumber.open(pdf) as doc:
        assert sum(len(p.images) for p in doc.pages) >= 5
        for page in doc.pages:
            assert all(MARGIN_X - 1 <= w["x0"] and w["x1"] <= MARGIN_X + FRAME_WIDTH + 1
                       for w in page.extract_words())


def _audit_dir(paper: Path, out: Path, populations: tuple[str, ...] = ("adults", "clinic")) -> Path:
    """An audit-design trial directory from the tiny paper trial's synthetic images (ID -> the reference
    population, OOD -> a target), its tables made by the audit's own functions."""
    from vctcore.trial import analysis
    from vctcore.trial.audit import population_table
    from vctcore.trial.config import parse_config
    from vctcore.trial.result import write_result

    src = TrialResult.load(paper)
    names = dict(zip(("ID", "OOD"), ("adults", "clinic")))
    preds = src.predictions[src.predictions["sample_type"] == "synthetic"].copy()
    preds["population"] = preds["population"].map(names)
    preds = preds[preds["population"].isin(populations)].reset_index(drop=True)
    preds["role"] = np.where(preds["population"] == "adults", "reference", "target")
    preds["outside_support"] = False
    cfg = parse_config({"name": "tiny_audit", "design": "audit", "model": {"path": "model"},
                        "reference_population": {"name": "adults", "csv": "adults.csv"},
                        "target_populations": [{"name": "clinic", "csv": "clinic.csv"}],
                        "statistics": {"n_boot": 200}}, base=out)
    pops = population_table(preds, cfg)
    pops = pops[pops["population"].isin(populations)].reset_index(drop=True)
    tables = {"populations": pops, **analysis.attribution_tables(preds, "bfp_pct", cfg.statistics, ("synthetic",))}
    notes = tables.pop("notes")
    summary = {"name": "tiny_audit", "design": "audit", "config": cfg.to_dict(), "task": "bfp_pct",
               "height_calibration": src.summary["height_calibration"], "oversample": 1,
               "verdicts": pops.assign(sample_type="synthetic").to_dict("records"),
               "degraded_populations": pops.loc[pops["degraded"], "population"].tolist(),
               "error_drivers": {"synthetic": []}, "warnings": notes, "provenance": src.summary["provenance"]}
    write_result(out, summary, preds, tables)
    return out


def test_audit_report_without_examples(paper_report, tmp_path: Path) -> None:
    paper, _ = paper_report
    trial = _audit_dir(paper, tmp_path / "audit")
    pdf = write_report(trial, tmp_path / "audit.pdf")
    text = flat(pdf_text(pdf))
    result = TrialResult.load(trial)
    for v in result.summary["verdicts"]:
        assert v["population"] in text and v["verdict"] in text
        assert f"[{v['mae_low']:.2f}, {v['mae_high']:.2f}]" in text
    assert "Against the reference" in text and "holds no example slices" in text
    assert {"Outside", "support"} <= set(text.split())
    assert "Correlation of the error with the bias attributes" not in text


def test_single_population_trial(paper_report, tmp_path: Path) -> None:
    paper, _ = paper_report
    trial = _audit_dir(paper, tmp_path / "one", populations=("adults",))
    text = flat(pdf_text(write_report(trial, tmp_path / "one.pdf")))
    assert "adults (reference population)" in text and "one population only" in text
    assert "clinic (target population)" not in text


@pytest.mark.parametrize("case", ["empty", "unfinished", "missing", "out_dir", "out_folder"])
def test_bad_input_exits_2_with_one_line(case: str, paper_report, tmp_path: Path) -> None:
    paper, _ = paper_report
    trial, out = tmp_path / "t", tmp_path / "r.pdf"
    expected = {"empty": "not a trial directory", "unfinished": "did not finish", "missing": "does not exist",
                "out_dir": "is a directory", "out_folder": "does not exist"}[case]
    if case == "empty":
        trial.mkdir()
    elif case == "unfinished":
        trial.mkdir()
        shutil.copy(paper / "config.json", trial / "config.json")
        (trial / "progress.json").write_text(json.dumps({"stage": "generate"}))
    elif case == "out_dir":
        trial, out = paper, tmp_path
    elif case == "out_folder":
        trial, out = paper, tmp_path / "no" / "r.pdf"
    with pytest.raises(ReportError, match=expected):
        write_report(trial, out)
    if case in ("unfinished", "out_folder"):  # the command line: one line, exit code 2
        r = vct("report", str(trial), "--out", str(out), "--quiet")
        assert r.returncode == 2 and expected in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("vct report: error:")


def _built(flowables: list, path: Path) -> Path:
    """``flowables`` laid out in the report's text frame (no padding), no header or footer."""
    from reportlab.platypus import BaseDocTemplate, Frame, PageTemplate

    from vctcore.report.style import FRAME_HEIGHT, MARGIN_BOTTOM, PAGE

    frame = Frame(MARGIN_X, MARGIN_BOTTOM, FRAME_WIDTH, FRAME_HEIGHT, leftPadding=0, rightPadding=0, topPadding=0,
                  bottomPadding=0)
    BaseDocTemplate(str(path), pagesize=PAGE, pageTemplates=[PageTemplate("p", [frame])]).build(flowables)
    return path


def test_long_table_repeats_its_header(tmp_path: Path) -> None:
    from vctcore.report.tables import df_table

    df = pd.DataFrame({"Patient": [f"P{i:04d}" for i in range(240)], "Population": ["ID", "OOD"] * 120,
                       "MAE (pp)": [f"{i / 7:.2f}" for i in range(240)]})
    pdf = _built(df_table(df), tmp_path / "long.pdf")
    with pdfplumber.open(pdf) as doc:
        assert len(doc.pages) >= 3
        for page in doc.pages:
            first = (page.extract_text() or "").splitlines()[0]
            assert first.split() == ["Patient", "Population", "MAE", "(pp)"]
    assert "P0239" in pdf_text(pdf)


def test_wide_table_is_split_and_fits(tmp_path: Path) -> None:
    from reportlab.platypus import Table

    from vctcore.report.tables import df_table

    cols = {"Feature": [f"feature_{i}" for i in range(5)]}
    cols |= {f"Sample type {k} permutation importance": [f"0.{k}{i}3 \u00b1 0.0{i}1" for i in range(5)]
             for k in range(14)}
    cols["Note"] = ["a" * 300] * 5  # one unbreakable token longer than the page
    parts = df_table(pd.DataFrame(cols))
    tables = [p for p in parts if isinstance(p, Table)]
    assert len(tables) > 1
    for t in tables:
        w, _ = t.wrap(FRAME_WIDTH, 10_000)
        assert w <= FRAME_WIDTH + 0.5
    pdf = _built(parts, tmp_path / "wide.pdf")
    with pdfplumber.open(pdf) as doc:
        for page in doc.pages:
            assert all(MARGIN_X - 1 <= w["x0"] and w["x1"] <= MARGIN_X + FRAME_WIDTH + 1
                       for w in page.extract_words())
    text = flat(pdf_text(pdf))
    assert "feature_4" in text and "0.1343 \u00b1 0.041" in text and "Part 2 of" in text
