"""The report's words: title-page facts, the executive summary's verdict lines, methods in brief,
limitations and the notes that name absent parts.

Every function returns reportlab paragraph markup (escaped text with <b>/<i>/<font> tags) built from
the values the trial recorded; nothing is computed here beyond counting and picking recorded rows.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from vctcore.report import fmt
from vctcore.report.results import verdict_markup
from vctcore.report.source import ReportSource

POPULATION_MEANING = {"ID": "in-distribution: the training set's side of the split boundary",
                      "OOD": "out-of-distribution: the other side of the split boundary"}
#: tables each design writes, with what they hold (for the notes on absent parts)
EXPECTED = {
    "paper": {"table1": "Table 1 (MAE per population and sample type)",
              "table2": "Table 2 (correlation of the error with the bias attributes)",
              "table3": "Table 3 (random-forest error regression)",
              "table4": "Table 4 (feature importances)",
              "importance_correlation": "the correlation of importances with the real ones",
              "shap": "the SHAP values", "subgroups": "the subgroup scan", "split": "the split composition",
              "faithful_twins": "the comparison of generated twins with their real sources"},
    "audit": {"populations": "the population table (MAE, verdicts, degradation)",
              "table3": "Table 3 (random-forest error regression)", "table4": "Table 4 (feature importances)",
              "importance_correlation": "the correlation of importances with the real ones",
              "shap": "the SHAP values", "subgroups": "the subgroup scan"},
}
#: words in a trial warning that explain a missing table
REASON_WORDS = {"table3": ("attribution",), "table4": ("attribution",), "shap": ("attribution",),
                "importance_correlation": ("attribution",), "subgroups": ("subgroup",)}


def e(v: Any) -> str:
    """Escaped text."""
    return escape(str(v))


def eu(src: ReportSource) -> str:
    return fmt.error_unit(src.unit)


def mae_phrase(rec: dict[str, Any], unit: str) -> str:
    """'MAE 2.09 pp (95% CI 1.57–2.62, n = 25)' from a recorded verdict row."""
    return (f"MAE {fmt.num(rec.get('mae'))} {e(unit)} (95% CI {fmt.num(rec.get('mae_low'))}\u2013"
            f"{fmt.num(rec.get('mae_high'))}, n = {fmt.integer(rec.get('n'))})")


def _verdicts(src: ReportSource) -> dict[tuple[str, str], dict[str, Any]]:
    return {(str(v.get("population")), str(v.get("sample_type"))): v for v in src.summary.get("verdicts") or []}


def populations_in_order(src: ReportSource) -> list[str]:
    return list(dict.fromkeys(str(v.get("population")) for v in src.summary.get("verdicts") or []))


def verdict_rule(src: ReportSource) -> str:
    st = src.statistics
    lo, hi = fmt.num(st.get("acceptable_below", 2.0), 1), fmt.num(st.get("significant_above", 3.0), 1)
    level = fmt.num(100 * float(st.get("level", 0.95)), 0)
    return (f"A population's verdict reads its MAE's {level}% bootstrap confidence interval: "
            f"<b>acceptable</b> when the whole interval lies below {lo} {e(eu(src))}, <b>significant degradation</b> "
            f"when it lies above {hi} {e(eu(src))}, <b>inconclusive</b> when it reaches the band between "
            "(too few patients, or an error near the thresholds).")


def headline(src: ReportSource) -> str:
    """One sentence over all populations."""
    if src.design == "paper":
        pops = src.summary.get("populations") or []
        parts = [f"{e(p['population'])}: {verdict_markup(p.get('real'))}" for p in pops]
        agree = [p for p in pops if p.get("synthetic_matches_real")]
        return (f"On real images the model under test is {'; '.join(parts)}. The virtual trial on synthetic images "
                f"reaches the real images' verdict for {len(agree)} of {len(pops)} populations.")
    degraded = list(src.summary.get("degraded_populations") or [])
    n_targets = sum(1 for v in src.summary.get("verdicts") or [] if v.get("role") == "target")
    if not n_targets:
        return "This trial holds one population only, so no population was compared with a reference."
    if degraded:
        return (f"<b>{len(degraded)} of {n_targets}</b> target population(s) show a degradation against the "
                f"reference population: {e(', '.join(degraded))}.")
    return f"None of the {n_targets} target population(s) shows a degradation against the reference population."


def population_lines(src: ReportSource) -> list[str]:
    """The executive summary: one line per population with its verdict, MAE and CI."""
    by, unit, lines = _verdicts(src), eu(src), []
    for pop in populations_in_order(src):
        if src.design == "paper":
            lines.append(_paper_line(pop, by, unit))
        else:
            lines.append(_audit_line(by[(pop, "synthetic")], unit))
    return lines


def _paper_line(pop: str, by: dict, unit: str) -> str:
    real = by.get((pop, "real"), {})
    meaning = POPULATION_MEANING.get(pop, "")
    out = [f"<b>{e(pop)} test population</b>{f' ({e(meaning)})' if meaning else ''}: "
           f"{verdict_markup(real.get('verdict'))} on real images, {mae_phrase(real, unit)}."]
    syn, reb = by.get((pop, "synthetic")), by.get((pop, "synthetic_rebiased"))
    if syn and syn.get("n"):
        same = "the same verdict" if syn.get("verdict") == real.get("verdict") else "a different verdict"
        out.append(f"The virtual trial on synthetic images: {verdict_markup(syn.get('verdict'))}, "
                   f"{mae_phrase(syn, unit)}, {same}")
        if reb and reb.get("n"):
            out.append(f"(re-biased: {verdict_markup(reb.get('verdict'))}, {mae_phrase(reb, unit)})")
        out[-1] += "."
    weighted = by.get((pop, "real_weighted"))
    if weighted and weighted.get("n"):
        out.append(f"Importance-weighted baseline from the real ID errors: {mae_phrase(weighted, unit)}.")
    return " ".join(out)


def _audit_line(rec: dict[str, Any], unit: str) -> str:
    role = str(rec.get("role", ""))
    out = [f"<b>{e(rec.get('population'))}</b> ({e(role)} population): {verdict_markup(rec.get('verdict'))}, "
           f"{mae_phrase(rec, unit)}."]
    if role == "target":
        if fmt.missing(rec.get("difference")):
            out.append("No comparison with the reference (too few patients).")
        else:
            state = "<b>degraded</b>" if rec.get("degraded") else "not shown to be degraded"
            out.append(f"Against the reference: {fmt.signed(rec.get('difference'))} {e(unit)} (95% CI "
                       f"{fmt.signed(rec.get('difference_low'))} to {fmt.signed(rec.get('difference_high'))}, "
                       f"one-sided p {fmt.pval(rec.get('p_degradation'))}): {state}.")
    outside = rec.get("outside_support")
    if not fmt.missing(outside) and int(outside) > 0:
        out.append(f"{int(outside)} of {fmt.integer(rec.get('n'))} requested patients lie outside the generator's "
                   "training support.")
    return " ".join(out)


def drivers_line(src: ReportSource) -> str:
    """Which attributes drive the error most (the recorded top permutation importances)."""
    drivers = src.summary.get("error_drivers") or {}
    parts = [f"{e(fmt.sample_type(s).lower())} images: {e(fmt.attributes(f))}" for s, f in drivers.items() if f]
    if parts:
        return ("<b>Attributes that drive the error most</b> (random-forest permutation importance, strongest "
                f"first): {'; '.join(parts)}.")
    reason = reasons(src, "table4")
    return ("<b>Attributes that drive the error most</b>: not determined in this trial"
            + (f" ({e(reason)})." if reason else "."))


def reasons(src: ReportSource, table: str) -> str:
    """The trial's recorded warnings that explain why ``table`` is absent, joined; '' when none."""
    words = REASON_WORDS.get(table, ())
    hits = [w for w in src.warnings if any(k in w.lower() for k in words)]
    return "; ".join(hits)


def absent_note(src: ReportSource, table: str) -> str:
    """'X is not in this trial: <recorded reason>' for a table the trial did not write."""
    what = EXPECTED.get(src.design, {}).get(table, table)
    reason = reasons(src, table)
    if reason:
        return f"<i>{e(what[0].upper() + what[1:])} is not in this trial. The trial recorded: {e(reason)}.</i>"
    hint = ""
    min_size = (src.statistics.get("subgroups") or {}).get("min_size")
    if table == "subgroups" and min_size:
        hint = (f"; the scan runs on a sample type with at least twice statistics.subgroups.min_size "
                f"({e(min_size)}) images")
    return f"<i>{e(what[0].upper() + what[1:])} is not in this trial (the trial recorded no reason{hint}).</i>"


def default_world_note(src: ReportSource) -> str | None:
    """A plain statement when the trial ran in the default world of digital-human phantoms."""
    gen = src.generator
    if not (src.real_phantoms or gen.phantom_trained):
        return None
    parts = []
    if src.real_phantoms:
        parts.append("the \u201creal\u201d patients of this trial are <b>digital-human phantoms</b> (procedural, "
                     "attribute-driven computational anatomy built by vct), <b>not patients</b>")
    if gen.phantom_trained:
        name = "the shipped default generator" if gen.default_world else "the generator"
        parts.append(f"{name} was trained on digital-human phantoms, so its synthetic CT reproduces the phantom "
                     "world (smooth analytic organs, no pathology, contrast or scanner table)")
    return ("<b>Default world.</b> This trial ran in vct's default world: " + "; ".join(parts) + ". Its numbers "
            "describe the model's behaviour in that world and show how the method works; they are not clinical "
            "evidence about patients.")


def _generator_phrase(src: ReportSource) -> str:
    g = (src.config.get("generator") or {})
    rec = src.provenance.get("generator") or {}
    steps = "the checkpoint's default sampler steps" if g.get("steps") is None else f"{g['steps']} sampler steps"
    guide = "its default guidance" if g.get("guidance") is None else f"guidance scale {g['guidance']}"
    cond = fmt.attributes(g.get("conditioning") or [])
    return (f"the generator at {e(rec.get('path') or 'the configured checkpoint')} ({steps}, {guide}, generation "
            f"seed {e(g.get('seed'))}), conditioned on {e(cond)}")


def methods(src: ReportSource) -> list[tuple[str, list[str]]]:
    """(subheading, paragraphs) of the methods in brief."""
    return [("Cohorts", _cohorts(src)), ("Measurement", [_measurement(src)]), ("Model under test", [_model(src)]),
            ("Comparison", _comparison(src))]


def _cohorts(src: ReportSource) -> list[str]:
    cfg, summary = src.config, src.summary
    if src.design != "paper":
        pops = [cfg.get("reference") or {}, *(cfg.get("targets") or [])]
        listed = "; ".join(f"{e(p.get('name'))}: " + (f"{fmt.integer(p.get('n'))} rows sampled from "
                                                      f"{e(Path(str(p['spec'])).name)}" if p.get("spec") else
                                                      f"rows of {e(Path(str(p.get('csv'))).name)}")
                           for p in pops)
        return [f"No real images: every population is synthesised. Populations ({listed}); the first is the "
                f"reference population, where the model was validated. Each attribute row gives "
                f"{e(summary.get('oversample', 1))} synthetic patient(s), made by {_generator_phrase(src)}."]
    ph = cfg.get("phantoms")
    real = (f"{fmt.integer(ph.get('n'))} digital-human phantoms sampled from the population specification "
            f"{e(Path(str(ph.get('population'))).name)} (seed {e(ph.get('seed'))})") if ph else \
        f"the real CT cohort at {e(cfg.get('real_cohort'))}"
    sizes = cfg.get("sizes") or {}
    split = summary.get("split") or {}
    oversample = (cfg.get("generator") or {}).get("oversample") or 2
    return [f"The real cohort is {real}; {fmt.integer((summary.get('real_cohort') or {}).get('n'))} of its patients "
            f"were measured. A linear boundary on measured attributes, <i>{e(split.get('rule', ''))}</i>, splits it "
            f"into a training set ({fmt.integer(sizes.get('train'))}), an in-distribution (ID) test set "
            f"({fmt.integer(sizes.get('id'))}) and an out-of-distribution (OOD) test set "
            f"({fmt.integer(sizes.get('ood'))}), so that the training set carries a shortcut between "
            f"{e(fmt.attribute(split.get('x', ''), unit=False))} and the target.",
            f"Each test patient is reconstructed once by the generator's autoencoders, and {e(oversample)} synthetic "
            f"patient(s) per test patient are made by {_generator_phrase(src)} as recorded for that patient. "
            "Synthetic patients whose measured attributes fall on the other side of the boundary are culled for "
            "the re-biased sample."]


def _measurement(src: ReportSource) -> str:
    cal = src.summary.get("height_calibration") or {}
    seg = "its own (generated or recorded) 16-class segmentation" if src.config.get("segmentation", "own") == "own" \
        else "the independent segmenter's segmentation"
    return ("Every image is measured the same way from its pixels (the seed paper's Appendix B): density from HU, "
            "mass over the body mask, body fat and muscle as shares of body mass, bone density as the trabecular HU "
            f"of L1\u2013L3, using {seg}. Height comes from the body's extent through a linear fit "
            f"(slope {fmt.num(cal.get('slope'), 3)}, intercept {fmt.num(cal.get('intercept'), 2)} cm, n = "
            f"{fmt.integer(cal.get('n'))}, residual SD {fmt.num(cal.get('residual_sd_cm'), 2)} cm). The measured "
            "target is the ground truth of each image.")


def _model(src: ReportSource) -> str:
    card = src.model_card
    model_cfg = src.config.get("model") or {}
    how = ("trained by this trial on the training set" if src.design == "paper" and not model_cfg.get("path")
           else f"loaded from {e(model_cfg.get('path'))}")
    return (f"{e(card.get('name', 'the model'))} predicts {e(fmt.target_name(str(card.get('target', ''))))} "
            f"({e(card.get('format', ''))} format), {how}. {e(card.get('description', ''))}")


def _comparison(src: ReportSource) -> list[str]:
    st = src.statistics
    sg = st.get("subgroups") or {}
    out = [verdict_rule(src),
           f"Confidence intervals come from {fmt.integer(st.get('n_boot'))} bootstrap resamples (statistics seed "
           f"{e(st.get('seed'))})."]
    if src.design == "paper":
        out.append("Z-scores and p-values compare each sample type's errors with the real errors of the same "
                   "population. The importance-weighted baseline re-weights the real ID errors by "
                   f"p(OOD | sex, age, height, weight) from a random forest ({e(st.get('n_trees'))} trees, minimum "
                   f"leaf {e(st.get('min_leaf'))}), as the seed paper's equations 4\u20136. Correlations of the "
                   "error with the bias attributes are Pearson's r, real against synthetic and reconstructed, with "
                   "a Fisher z-test of their difference.")
    else:
        out.append("For each target population the MAE difference to the reference has a bootstrap CI and a "
                   "one-sided Welch p-value; a population is degraded when the CI lies above 0 and p < "
                   f"{e(sg.get('alpha', 0.05))}.")
    out.append(f"A random forest ({e(st.get('n_trees'))} trees) regresses the absolute error on 8 attributes (sex, "
               "age, height, weight, body fat, bone density, muscle, body volume): its cross-validated MAE, "
               f"impurity and permutation importances over {e(st.get('importance_boot'))} bootstrap refits, and "
               f"SHAP values. The subgroup scan cuts each attribute into {e(sg.get('n_bins'))} quantile bins"
               f"{' and their pairs' if sg.get('pairs') else ''} (slices of at least {e(sg.get('min_size'))} "
               "images), tests whether a slice's MAE exceeds the rest's (one-sided Welch t-test) and controls the "
               f"false discovery rate (Benjamini\u2013Hochberg, \u03b1 = {e(sg.get('alpha'))}).")
    return out


def support_line(src: ReportSource) -> str | None:
    """The generator's training support as recorded in its manifest."""
    sup = src.generator.support
    parts = []
    for name, rng in sup.items():
        if isinstance(rng, dict) and "min" in rng and "max" in rng:
            parts.append(f"{fmt.attribute(name, unit=False).lower()} {fmt.num(rng['min'], 1)}\u2013"
                         f"{fmt.num(rng['max'], 1)}")
        elif isinstance(rng, dict) and rng.get("categories"):
            parts.append(f"{fmt.attribute(name, unit=False).lower()} {'/'.join(map(str, rng['categories']))}")
    return ("The generator's training support (its manifest): " + e("; ".join(parts)) + ". Requests outside it are "
            "extrapolations.") if parts else None


def sample_size_line(src: ReportSource) -> str:
    ns = [int(v["n"]) for v in src.summary.get("verdicts") or [] if not fmt.missing(v.get("n")) and int(v["n"]) > 0]
    if not ns:
        return "The trial recorded no evaluated images."
    return (f"Sample sizes: {min(ns)} to {max(ns)} images per population and sample type (Table 1). With a few "
            "dozen images per group the confidence intervals are wide and verdicts are often inconclusive; the "
            "random-forest attribution and the subgroup scan need more images still and are skipped below their "
            "minimum sizes.")


def limitations(src: ReportSource) -> list[str]:
    """Bullet paragraphs of the limitations section (the fidelity table follows separately)."""
    out = []
    note = default_world_note(src)
    if note:
        out.append(note)
    out.append("<b>Synthetic data.</b> Conclusions drawn from synthetic images hold only as far as the generator is "
               "faithful to the population it imitates; its recorded fidelity figures follow.")
    sup = support_line(src)
    if sup:
        out.append(f"<b>Attribute support.</b> {sup}")
    out.append(f"<b>Sample sizes.</b> {sample_size_line(src)}")
    out.append("<b>Measured ground truth.</b> The target of every image is measured from the image, so "
               "measurement error is part of each reported error.")
    st = src.statistics
    out.append(f"<b>Thresholds.</b> The verdict thresholds ({fmt.num(st.get('acceptable_below', 2.0), 1)} and "
               f"{fmt.num(st.get('significant_above', 3.0), 1)} {e(eu(src))}) are the seed paper's nominal choice, "
               "not a regulatory standard.")
    for w in src.warnings:
        out.append(f"<b>Trial warning.</b> {e(w)}")
    return out


def title_facts(src: ReportSource, generated: str) -> list[tuple[str, str]]:
    """(label, plain text) rows of the title page."""
    prov, card = src.provenance, src.model_card
    model, gen = prov.get("model") or {}, prov.get("generator") or {}
    pops = []
    if src.design == "paper":
        sizes = src.config.get("sizes") or {}
        pops = [f"ID test ({sizes.get('id')} real patients)", f"OOD test ({sizes.get('ood')} real patients)"]
    else:
        pops = [f"{v.get('population')} ({v.get('role')}, {fmt.integer(v.get('n'))} synthetic patients)"
                for v in src.summary.get("verdicts") or []]
    rows = [("Trial", f"{src.result.name} ({src.design} design)"),
            ("Finished", str(prov.get("finished_utc", fmt.DASH))),
            ("Report generated", generated),
            ("Task", f"{fmt.target_name(str(src.summary.get('task', '')))}; error in {eu(src)}"),
            ("Model under test", f"{card.get('name', model.get('name', ''))} ({card.get('task', 'regression')} of "
                                 f"{card.get('target', '')} in {card.get('unit', '')}, {card.get('format', '')} format)"),
            ("Model card", str((card.get("intended_population") or {}).get("summary", fmt.DASH))),
            ("Model weights sha256", str(model.get("weights_sha256", fmt.DASH))),
            ("Generator", str(gen.get("path") or fmt.DASH))]
    for f, h in (gen.get("sha256") or {}).items():
        rows.append((f"sha256 {f}", str(h)))
    rows.append(("Populations", "; ".join(pops)))
    return rows
