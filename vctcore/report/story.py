"""The report's content in reading order, as reportlab flowables: title page, executive summary,
methods, results, figures, limitations, appendix.

``build_story(src, generated, progress)`` reads a :class:`~vctcore.report.source.ReportSource` and
returns the flowables; the page layout lives in :mod:`vctcore.report.document`.
"""
from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pandas as pd
import yaml
from reportlab.platypus import (CondPageBreak, Flowable, Image, KeepTogether, NextPageTemplate, PageBreak,
                                Paragraph, Preformatted, Spacer)
from reportlab.platypus.tableofcontents import TableOfContents

from vctcore.progress import Progress
from vctcore.provenance import read_versions
from vctcore.report import figures, fmt, results, text
from vctcore.report.source import ReportSource
from vctcore.report.style import FRAME_HEIGHT, FRAME_WIDTH, MONO, styles
from vctcore.report.tables import df_table, key_value_table

e = text.e


class Numbering:
    """Running numbers of tables and figures."""

    def __init__(self) -> None:
        self.tables = 0
        self.figures = 0

    def table(self, caption: str) -> Paragraph:
        self.tables += 1
        return Paragraph(f"<b>Table {self.tables}.</b> {caption}", styles()["caption"])

    def figure(self, caption: str) -> Paragraph:
        self.figures += 1
        return Paragraph(f"<b>Figure {self.figures}.</b> {caption}", styles()["caption"])


def h1(title: str) -> Paragraph:
    return Paragraph(e(title), styles()["h1"])


def h2(title: str) -> Paragraph:
    return Paragraph(e(title), styles()["h2"])


def h2_before_long(title: str) -> list[Flowable]:
    """A subheading for a long splittable block (it starts on this page when a few lines fit)."""
    return [CondPageBreak(100), Paragraph(e(title), styles()["h2"].clone("h2", keepWithNext=0))]


def para(markup: str, style: str = "body") -> Paragraph:
    return Paragraph(markup, styles()[style])


def image(png: bytes, width_in: float, height_in: float) -> Image:
    """A PNG scaled to the frame's width at most (and 80% of its height), aspect kept."""
    w, h = width_in * 72.0, height_in * 72.0
    scale = min(1.0, FRAME_WIDTH / w, 0.8 * FRAME_HEIGHT / h)
    img = Image(io.BytesIO(png), width=w * scale, height=h * scale)
    img.hAlign = "CENTER"
    return img


def figure_block(fig, caption: Paragraph) -> Flowable:
    w, h = fig.get_size_inches()
    return KeepTogether([image(figures.png(fig), w, h), caption])


def table_block(caption: Paragraph, df: pd.DataFrame, **kw: Any) -> list[Flowable]:
    """Caption above the table; the caption stays with the table's first rows."""
    parts = df_table(df, **kw)
    return [CondPageBreak(60), caption, *parts]


def title_page(src: ReportSource, generated: str) -> list[Flowable]:
    s = styles()
    facts = text.title_facts(src, generated)
    mono = [k for k, _ in facts if "sha256" in k]
    out: list[Flowable] = [Spacer(1, 30), Paragraph("VIRTUAL CLINICAL TRIAL \u00b7 BIAS REPORT", s["small"]),
                           Paragraph(e(src.result.name), s["title"])]
    if src.summary.get("description"):
        out.append(Paragraph(e(src.summary["description"]), s["subtitle"]))
    out += [key_value_table(facts, mono_keys=mono, key_share=0.24)]
    note = text.default_world_note(src)
    if note:
        out.append(Paragraph(note, s["note"]))
    out += [Spacer(1, 8),
            Paragraph(f"Written by vct from the trial directory <font face=\"{MONO}\">{e(src.result.root)}</font> "
                      "alone: every number in this report was recorded by the trial (<font face=\"" + MONO +
                      "\">trial.json</font>, <font face=\"" + MONO + "\">predictions.csv</font>, <font face=\"" +
                      MONO + "\">tables/</font>); the report computes none. The generator's fidelity figures come "
                      "from its model card.", s["small"]),
            NextPageTemplate("body"), PageBreak()]
    return out


def contents() -> list[Flowable]:
    toc = TableOfContents()
    base = styles()["body"]
    toc.levelStyles = [base.clone("toc1", fontSize=9.5, leading=13, leftIndent=0, firstLineIndent=0),
                       base.clone("toc2", fontSize=8.5, leading=11, leftIndent=14, firstLineIndent=0,
                                  textColor=base.textColor)]
    toc.dotsMinLevel = 0
    return [Paragraph("Contents", styles()["h1"].clone("contents_head")), toc, Spacer(1, 14)]


def executive_summary(src: ReportSource) -> list[Flowable]:
    out = [h1("1  Executive summary"), para(text.headline(src)), para(text.verdict_rule(src), "small")]
    for line in text.population_lines(src):
        out.append(Paragraph(line, styles()["bullet"], bulletText="\u2022"))
    out.append(para(text.drivers_line(src)))
    if src.warnings:
        out.append(para(f"The trial recorded {len(src.warnings)} warning(s); they are listed under Limitations.",
                        "small"))
    return out


def methods(src: ReportSource, num: Numbering) -> list[Flowable]:
    out: list[Flowable] = [h1("2  Methods in brief")]
    note = text.default_world_note(src)
    if note:
        out.append(para(note, "note"))
    for k, (title, paragraphs) in enumerate(text.methods(src), start=1):
        out.append(h2(f"2.{k}  {title}"))
        out += [para(p) for p in paragraphs]
    return out


def _absent_or(src: ReportSource, name: str, build: Callable[[pd.DataFrame], list[Flowable]]) -> list[Flowable]:
    t = src.table(name)
    return build(t) if t is not None else [para(text.absent_note(src, name))]


def results_section(src: ReportSource, num: Numbering) -> list[Flowable]:
    unit, eu = src.unit, text.eu(src)
    out: list[Flowable] = [CondPageBreak(0.45 * FRAME_HEIGHT), h1("3  Results"), h2("3.1  Error per population")]
    if src.design == "paper":
        out += _absent_or(src, "table1", lambda t: table_block(num.table(
            f"Model performance per population and sample type (seed paper Table 1): mean absolute error in {e(eu)} "
            "with its 95% bootstrap CI, Z-score and p-value of the errors against the real errors of the same "
            "population, verdict. <i>Real (weighted)</i>: the importance-weighted baseline, real ID errors weighted "
            "to the OOD attribute distribution."), results.table1(t, unit), key_columns=3, markup=["Verdict"],
            rules_before=results.group_starts(t["population"])))
        out += [h2("3.2  The biased split, the importance-weighted baseline and re-biasing")]
        comp = src.table("split")
        if comp is not None:
            out += table_block(num.table(
                "Composition of the split: per set, the shares of women and men, the mean target and the shortcut "
                f"(Pearson r of {e(fmt.attribute(str((src.summary.get('split') or {}).get('x', ''))))} with the "
                "target) over all patients and within each sex."),
                results.split_composition(comp, str(src.summary.get("task"))))
        out.append(para(_weighting_text(src)))
        out += [h2("3.3  Correlation of the error with the bias attributes")]
        out += _absent_or(src, "table2", lambda t: table_block(num.table(
            "Pearson correlation of the absolute error with each bias attribute over the ID and OOD test images "
            "(seed paper Table 2), real against the other sample type, with the p-value of their difference."),
            results.table2(t), key_columns=2, rules_before=results.group_starts(t["compared_with"])))
        out += [CondPageBreak(0.3 * FRAME_HEIGHT), h2("3.4  Generated twins against their real sources")]
        out += _absent_or(src, "faithful_twins", lambda t: table_block(num.table(
            f"Signed error (prediction minus image-measured truth, {e(eu)}) of the reconstructed and synthetic "
            f"twins beside their real sources'. <i>Faithful</i> twins measure within {t['tolerance'].iloc[0]:g} "
            "points of their source's "
            "BFP and MMP: where their gap to their sources stays (CI over sources excluding 0), the model reads "
            "generated images differently from real ones of the same composition, and the synthetic verdicts carry "
            "that difference; where it closes, the mismatch is the generated bodies' drift in composition."),
            results.faithful_twins(t, unit), key_columns=2, rules_before=results.group_starts(t["sample_type"])))
        k = 5
    else:
        out += _absent_or(src, "populations", lambda t: table_block(num.table(
            f"Model performance per population (synthetic images): MAE in {e(eu)} with its 95% CI and verdict; for "
            "target populations the MAE difference to the reference, its CI and the one-sided p-value."),
            results.populations(t, unit), key_columns=1, markup=["Verdict"]))
        k = 2
    out.append(h2(f"3.{k}  Error attribution"))
    out += _absent_or(src, "table3", lambda t: table_block(num.table(
        "Random-forest regression of the absolute error on the 8 attributes (seed paper Table 3): cross-validated "
        "MAE \u00b1 SD of the forest, beside the mean absolute error it predicts."), results.table3(t, unit)))
    out += _absent_or(src, "table4", lambda t: table_block(num.table(
        "Feature importances of the error forest (seed paper Table 4): permutation and impurity importance, mean "
        "\u00b1 SD over bootstrap refits."), results.table4(t), font_size=7))
    if src.table("table4") is not None and src.table("importance_correlation") is not None:
        out += table_block(num.table("Correlation of each sample type's importances with the real images' "
                                     "importances (paper: 0.919 to 0.998)."),
                           results.importance_correlation(src.table("importance_correlation")), stretch=False)
    out.append(h2(f"3.{k + 1}  Subgroup scan"))
    out += _absent_or(src, "subgroups", lambda t: table_block(num.table(
        f"The subgroup scan's worst slices (largest excess MAE over the rest of the images, up to "
        f"{results.WORST_SLICES} per sample type): MAE with CI, one-sided Welch p and Benjamini\u2013Hochberg "
        "adjusted p; <i>flagged</i>: adjusted p below \u03b1."), results.subgroups(t, unit), key_columns=2,
        rules_before=results.group_starts(t.sort_values("effect", ascending=False, kind="stable")
                                          .groupby("sample_type", sort=False).head(results.WORST_SLICES)
                                          ["sample_type"])))
    return out


def _weighting_text(src: ReportSource) -> str:
    w = src.summary.get("importance_weighting") or {}
    by = {(v.get("population"), v.get("sample_type")): v for v in src.summary.get("verdicts") or []}
    parts = [f"The forest that tells ID from OOD test patients by their recorded sex, age, height and weight reaches "
             f"an accuracy of {fmt.num(w.get('classifier_accuracy_train'), 2)} on its training data and "
             f"{fmt.num(w.get('classifier_accuracy_oob'), 2)} out of bag; the priors are p(ID) = "
             f"{fmt.num(w.get('p_id'), 3)} and p(OOD) = {fmt.num(w.get('p_ood'), 3)}, the shares of the measured "
             "real cohort on each side of the boundary. The weighted MAE is Table 1's <i>Real (weighted)</i> row."]
    if w.get("effective_n") is not None:
        parts.append(f"Its weights amount to {fmt.num(w.get('effective_n'), 1)} effective patients (Kish) of "
                     f"{fmt.integer(w.get('n'))}; the largest carries {fmt.num(100 * w['max_weight_share'], 0)} % of "
                     "the total.")
    kept = [f"{fmt.integer(by[(p, 'synthetic_rebiased')].get('n'))} of {fmt.integer(by[(p, 'synthetic')].get('n'))}"
            f" synthetic {e(p)} images" for p in ("ID", "OOD")
            if (p, "synthetic_rebiased") in by and (p, "synthetic") in by]
    if kept:
        parts.append("Re-biasing kept " + " and ".join(kept) + " (those whose measured attributes lie on their "
                     "population's side of the boundary).")
    return " ".join(parts)


def figures_section(src: ReportSource, num: Numbering, progress: Progress) -> list[Flowable]:
    preds, st, unit = src.predictions, src.statistics, src.unit
    out: list[Flowable] = [PageBreak(), h1("4  Figures"), h2("4.1  Error distributions")]
    rows = src.table("table1") if src.design == "paper" else src.table("populations")
    if rows is not None and src.design == "audit":
        rows = rows.assign(sample_type="synthetic")
    if rows is not None:
        rows = rows[rows["n"].fillna(0) > 0]
    fig = figures.error_distributions(preds, rows if rows is not None else pd.DataFrame(), unit=unit,
                                      acceptable=float(st.get("acceptable_below", 2.0)),
                                      significant=float(st.get("significant_above", 3.0)))
    progress("error distributions")
    out.append(figure_block(fig, num.figure(
        "Absolute error of every image per population and sample type (box: quartiles; points: images), with the "
        "recorded MAE and its 95% CI (diamond) and the verdict thresholds.")) if fig else para(
        "<i>No evaluated images to draw.</i>"))
    out.append(h2("4.2  Error and the bias attributes"))
    if src.design == "paper":
        split = src.summary.get("split") or {}
        fig = figures.bias_plane(preds, split)
        progress("bias plane")
        if fig:
            out.append(figure_block(fig, num.figure(
                "Test images in the plane of the two split attributes, coloured by absolute error (circles ID, "
                "triangles OOD), with the recorded split boundary for women and men.")))
        attrs = list(dict.fromkeys([split.get("x"), split.get("y"), src.summary.get("task")]))
        types = figures.ERROR_TYPES
        caption = "Absolute error against each bias attribute and the target, per sample type."
    else:
        drivers = (src.summary.get("error_drivers") or {}).get("synthetic") or []
        attrs = drivers or ["age_years", "weight_kg", "bfp_pct"]
        types = ("synthetic",)
        caption = ("Absolute error against the attributes that drive it most (random-forest permutation importance)"
                   if drivers else "Absolute error against age, weight and body fat") + ", per population."
    fig = figures.error_vs_attributes(preds, [a for a in attrs if a], unit=unit, sample_types=types)
    progress("error vs attributes")
    out.append(figure_block(fig, num.figure(caption)) if fig else para("<i>No attributes to draw.</i>"))
    out.append(h2("4.3  Feature importances"))
    fig = figures.importance_bars(src.table("table4"))
    progress("importances")
    out.append(figure_block(fig, num.figure("Importance of each attribute for the error forest, mean \u00b1 SD "
                                            "over bootstrap refits, per sample type.")) if fig else
               para(text.absent_note(src, "table4")))
    out.append(h2("4.4  SHAP summary"))
    from vctcore.trial.attribution import FEATURES

    fig = figures.shap_summary(src.table("shap"), preds, FEATURES)
    progress("SHAP")
    out.append(figure_block(fig, num.figure("SHAP values of the error forest: each point is one image; right of "
                                            "zero the attribute raises the predicted error.")) if fig else
               para(text.absent_note(src, "shap")))
    out += example_figures(src, num)
    progress("example slices")
    return out


def example_figures(src: ReportSource, num: Numbering) -> list[Flowable]:
    out: list[Flowable] = [h2("4.5  Example CT slices")]
    if not src.examples_present:
        return out + [para("<i>This trial directory holds no example slices (no examples/ folder: the trial was "
                           "run by a vct that did not write them). Rerunning the same vct trial command adds them "
                           "from the patient store.</i>")]
    if not src.examples:
        out.append(para("<i>The trial wrote no example slices.</i>"))
    by_pop: dict[str, list[dict]] = {}
    for ex in src.examples:
        by_pop.setdefault(str(ex["population"]), []).append(ex)
    for pop, exs in by_pop.items():
        fig = figures.example_slices(exs[:6], f"Population {pop}")
        cap = ("Coronal slices through each body's centroid (soft-tissue window W 400 / L 40 HU) with the "
               f"segmentation's organ outlines, population {e(pop)}")
        cap += (": a real patient beside its reconstruction and a synthetic patient conditioned on its recorded "
                "attributes." if src.design == "paper" else ".")
        out.append(figure_block(fig, num.figure(cap)))
    for s in src.skipped_examples:
        out.append(para(f"<i>Example {e(s.get('patient_id'))} ({e(s.get('population'))}, "
                        f"{e(s.get('sample_type'))}) could not be read by the trial: {e(s.get('reason'))}.</i>",
                        "small"))
    return out


def limitations_section(src: ReportSource, num: Numbering) -> list[Flowable]:
    out: list[Flowable] = [PageBreak(), h1("5  Limitations")]
    for line in text.limitations(src):
        out.append(Paragraph(line, styles()["bullet"], bulletText="\u2022"))
    gen = src.generator
    out.append(h2("5.1  Generator fidelity"))
    if gen.metrics:
        df = results.fidelity(gen.metrics)
        met = int((df["Met"] == "yes").sum())
        judged = int(df["Met"].isin(["yes", "no"]).sum())
        out.append(para(f"From the generator's model card ({e(gen.path)}/metrics.json; its file hashes match the "
                        f"trial's record). Of the {judged} figures whose card records whether they meet their "
                        f"target, {met} do."))
        out += table_block(num.table("The generator's recorded fidelity figures (vct evaluate-generator and "
                                     "reconstruction benchmarks), with their targets."), df, font_size=7)
    else:
        out.append(para(f"<i>The generator's fidelity figures are not shown: {e(gen.note)}.</i>"))
    return out


def _card_for_appendix(card: dict[str, Any]) -> dict[str, Any]:
    out = dict(card)
    td = dict(out.get("training_data") or {})
    if isinstance(td.get("ids"), list):
        td["ids"] = f"({len(td['ids'])} patient ids, listed in trial.json; see ids_sha256)"
        out["training_data"] = td
    return out


def _mono_block(obj: Any) -> Preformatted:
    from reportlab.pdfbase.pdfmetrics import stringWidth

    style = styles()["mono"]
    chars = int(FRAME_WIDTH / stringWidth("M", MONO, style.fontSize)) - 1
    body = yaml.safe_dump(obj, sort_keys=False, allow_unicode=True, width=chars - 12, default_flow_style=None)
    return Preformatted(body, style, maxLineLength=chars, newLineChars="  ")


def appendix(src: ReportSource, num: Numbering) -> list[Flowable]:
    prov, cfg = src.provenance, src.config
    out: list[Flowable] = [PageBreak(), h1("Appendix"), *h2_before_long("A  Trial configuration (as resolved)")]
    out.append(_mono_block({k: v for k, v in cfg.items() if k != "raw"}))
    out.append(h2("B  Seeds"))
    out += df_table(pd.DataFrame({"Seed": list((prov.get("seeds") or {}).keys()),
                                  "Value": [str(v) for v in (prov.get("seeds") or {}).values()]}), stretch=False)
    out.append(h2("C  Checksums (sha256)"))
    sums = [("model weights", (prov.get("model") or {}).get("weights_sha256"))]
    sums += [(f"generator {f}", h) for f, h in ((prov.get("generator") or {}).get("sha256") or {}).items()]
    if src.summary.get("real_cohort"):
        sums.append(("real cohort attributes.csv", src.summary["real_cohort"].get("attributes_sha256")))
    out += df_table(pd.DataFrame({"Artifact": [a for a, _ in sums], "sha256": [str(h) for _, h in sums]}),
                    mono=["sha256"])
    out.append(h2("D  Software, machine and timing"))
    versions = read_versions(prov)
    out += df_table(pd.DataFrame({"Package": list(versions), "Version": [str(v) for v in versions.values()]}),
                    stretch=False)
    machine = prov.get("machine") or {}
    facts = [(k, str(v)) for k, v in machine.items()]
    facts += [("started (UTC)", str(prov.get("started_utc", ""))), ("finished (UTC)", str(prov.get("finished_utc", ""))),
              ("wall time (s)", str(prov.get("wall_seconds", "")))]
    facts += [(f"stage {k} (s)", str(v)) for k, v in (prov.get("stage_seconds") or {}).items()]
    out.append(key_value_table(facts, font_size=7.5))
    out += h2_before_long("E  Model card of the model under test")
    out.append(_mono_block(_card_for_appendix(src.model_card)))
    out.append(h2("F  Rerunning this trial"))
    source = cfg.get("source") or "TRIAL.yaml"
    out.append(para(f"<font face=\"{MONO}\">vct trial --config {e(source)} --out {e(src.result.root)}</font> "
                    "reruns the trial (the directory pins its configuration; patients come from the patient store "
                    f"at <font face=\"{MONO}\">{e(src.summary.get('cache', ''))}</font> or are made again from the "
                    "seeds above); <font face=\"" + MONO + "\">vct report</font> then writes this report again."))
    return out


def keep_headings(story: list[Flowable]) -> list[Flowable]:
    """Headings directly before a kept-together block (a figure) join that block, so a heading never ends a
    page alone (reportlab's keepWithNext does not hold against a block taller than the space left)."""
    out: list[Flowable] = []
    heads: list[Flowable] = []
    for f in story:
        if isinstance(f, Paragraph) and f.style.name in ("h1", "h2"):
            heads.append(f)
            continue
        if heads and isinstance(f, KeepTogether):
            out.append(KeepTogether([*heads, *f._content]))
        else:
            out += [*heads, f]
        heads = []
    return out + heads


def build_story(src: ReportSource, generated: str, progress: Progress | None = None) -> list[Flowable]:
    """All flowables of the report. ``progress(done, total, label)`` is called as parts are built."""
    steps = ["title", "summary", "methods", "results", "error distributions", "bias plane", "error vs attributes",
             "importances", "SHAP", "example slices", "limitations", "appendix"]
    if src.design != "paper":
        steps.remove("bias plane")
    done = {"n": 0}

    def tick(label: str) -> None:
        done["n"] += 1
        if progress is not None:
            progress(done["n"], len(steps), label)

    num = Numbering()
    story = title_page(src, generated)
    tick("title")
    story += contents() + executive_summary(src)
    tick("summary")
    story += methods(src, num)
    tick("methods")
    story += results_section(src, num)
    tick("results")
    story += figures_section(src, num, tick)
    story += limitations_section(src, num)
    tick("limitations")
    story += appendix(src, num)
    tick("appendix")
    return keep_headings(story)
