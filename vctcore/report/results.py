"""The trial's recorded tables as display tables: chosen columns, readable headers, formatted values.

Each function takes a recorded table (``tables/<name>.csv`` as a DataFrame) and returns a DataFrame of
strings for :func:`vctcore.report.tables.df_table`; rows are selected and ordered, never recomputed.
"""
from __future__ import annotations

from xml.sax.saxutils import escape

import pandas as pd

from vctcore.report import fmt
from vctcore.report.style import VERDICT_COLOURS

#: subgroup slices listed per sample type
WORST_SLICES = 10
ROLE_LABELS = {"train": "Training", "id_test": "ID test", "ood_test": "OOD test", "unused": "Unused"}


def verdict_markup(v: object) -> str:
    """A verdict as coloured bold paragraph markup."""
    text = fmt.verdict_label(v)
    colour = VERDICT_COLOURS.get(text)
    if colour is None:
        return escape(text)
    return f'<font color="#{colour.hexval()[2:]}"><b>{escape(text)}</b></font>'


def group_starts(values: pd.Series) -> list[int]:
    """Row positions where ``values`` changes (for rules between groups)."""
    v = list(values)
    return [i for i in range(1, len(v)) if v[i] != v[i - 1]]


def mae_columns(t: pd.DataFrame, unit: str) -> dict[str, list[str]]:
    """The MAE and its CI (columns ``mae``, ``mae_low``, ``mae_high``) as two display columns."""
    return {f"MAE ({fmt.error_unit(unit)})": [fmt.num(v) for v in t["mae"]],
            "MAE 95% CI": [fmt.ci(a, b) for a, b in zip(t["mae_low"], t["mae_high"])]}


def table1(t1: pd.DataFrame, unit: str) -> pd.DataFrame:
    """Paper Table 1: per population and sample type, n, MAE with CI, Z and p against real, verdict."""
    return pd.DataFrame({
        "Population": t1["population"].astype(str),
        "Attr. dist.": t1["attr_dist"].astype(str),
        "Sample type": [fmt.sample_type(s) for s in t1["sample_type"]],
        "n": [fmt.integer(v) for v in t1["n"]],
        **mae_columns(t1, unit),
        "Z vs real": [fmt.num(v) for v in t1["z"]],
        "Z 95% CI": [fmt.ci(a, b) for a, b in zip(t1["z_low"], t1["z_high"])],
        "p": [fmt.pval(v) for v in t1["p"]],
        "Verdict": [verdict_markup(v) for v in t1["verdict"]],
    })


def populations(pops: pd.DataFrame, unit: str) -> pd.DataFrame:
    """The audit's population table: MAE with CI and verdict; for targets the difference to the reference."""
    eu = fmt.error_unit(unit)
    return pd.DataFrame({
        "Population": pops["population"].astype(str),
        "Role": pops["role"].astype(str),
        "n": [fmt.integer(v) for v in pops["n"]],
        "Outside support": [fmt.integer(v) for v in pops.get("outside_support", pd.Series([None] * len(pops)))],
        **mae_columns(pops, unit),
        "Verdict": [verdict_markup(v) for v in pops["verdict"]],
        f"\u0394 vs reference ({eu})": [fmt.signed(v) for v in pops["difference"]],
        "\u0394 95% CI": [fmt.ci(a, b) for a, b in zip(pops["difference_low"], pops["difference_high"])],
        "p (1-sided)": [fmt.pval(v) for v in pops["p_degradation"]],
        "Degraded": ["" if r == "reference" else ("yes" if str(d).lower() == "true" else "no")
                     for r, d in zip(pops["role"], pops["degraded"])],
    })


def table2(t2: pd.DataFrame) -> pd.DataFrame:
    """Paper Table 2: Pearson r of the absolute error with each bias attribute, real vs another type."""
    return pd.DataFrame({
        "Compared with": [fmt.sample_type(s) for s in t2["compared_with"]],
        "Attribute": [fmt.attribute(a) for a in t2["attribute"]],
        "r (real)": [fmt.num(v, 3) for v in t2["r_real"]],
        "p (real)": [fmt.pval(v) for v in t2["p_real"]],
        "n (real)": [fmt.integer(v) for v in t2["n_real"]],
        "r (other)": [fmt.num(v, 3) for v in t2["r_other"]],
        "p (other)": [fmt.pval(v) for v in t2["p_other"]],
        "n (other)": [fmt.integer(v) for v in t2["n_other"]],
        "p (difference)": [fmt.pval(v) for v in t2["p_difference"]],
    })


def table3(t3: pd.DataFrame, unit: str) -> pd.DataFrame:
    """Paper Table 3: the random forest's cross-validated MAE in predicting the absolute error."""
    eu = fmt.error_unit(unit)
    return pd.DataFrame({
        "Sample type": [fmt.sample_type(s) for s in t3["sample_type"]],
        "n": [fmt.integer(v) for v in t3["n"]],
        f"Forest MAE \u00b1 SD ({eu})": [fmt.pm(m, s) for m, s in zip(t3["mae"], t3["sd"])],
        f"Mean absolute error ({eu})": [fmt.num(v) for v in t3["mean_abs_error"]],
    })


def table4(t4: pd.DataFrame) -> pd.DataFrame:
    """Paper Table 4: per feature (rows) and sample type (columns), permutation and impurity importance,
    mean \u00b1 SD over the bootstrap refits."""
    types = list(dict.fromkeys(t4["sample_type"]))
    feats = list(dict.fromkeys(t4["feature"]))
    by = t4.set_index(["sample_type", "feature"])
    out = {"Feature": [fmt.attribute(f) for f in feats]}
    for kind, label in (("permutation", "perm."), ("impurity", "impurity")):
        for s in types:
            col = f"{fmt.sample_type(s)} {label}"
            out[col] = [fmt.pm(by.loc[(s, f), f"{kind}_mean"], by.loc[(s, f), f"{kind}_sd"], 3)
                        if (s, f) in by.index else fmt.DASH for f in feats]
    return pd.DataFrame(out)


def faithful_twins(ft: pd.DataFrame, unit: str) -> pd.DataFrame:
    """Generated twins against their real sources: mean signed error of all twins and of the faithful ones
    (same measured BFP and MMP within the tolerance) beside their sources', and the faithful gap with CI."""
    eu = fmt.error_unit(unit)
    return pd.DataFrame({
        "Population": ft["population"].astype(str),
        "Sample type": [fmt.sample_type(s) for s in ft["sample_type"]],
        "n (faithful)": [f"{fmt.integer(a)} ({fmt.integer(b)})" for a, b in zip(ft["n"], ft["n_faithful"])],
        f"Error, all twins ({eu})": [fmt.signed(v) for v in ft["error_mean"]],
        "Sources, all": [fmt.signed(v) for v in ft["source_error_mean"]],
        "Error, faithful twins": [fmt.signed(v) for v in ft["faithful_error_mean"]],
        "Sources, faithful": [fmt.signed(v) for v in ft["faithful_source_error_mean"]],
        "Gap [95% CI]": [f"{fmt.signed(g)} {fmt.ci(a, b)}" for g, a, b in zip(ft["gap"], ft["gap_low"], ft["gap_high"])],
        "Reads differently": ["yes" if str(v).lower() == "true" else "no" for v in ft["reads_differently"]],
    })


def importance_correlation(ic: pd.DataFrame) -> pd.DataFrame:
    """Pearson r of each sample type's importances with the real images' importances."""
    return pd.DataFrame({
        "Sample type": [fmt.sample_type(s) for s in ic["sample_type"]],
        "r with real (impurity)": [fmt.num(v, 3) for v in ic["r_impurity"]],
        "r with real (permutation)": [fmt.num(v, 3) for v in ic["r_permutation"]],
    })


def subgroups(sg: pd.DataFrame, unit: str, per_type: int = WORST_SLICES) -> pd.DataFrame:
    """The subgroup scan's worst slices (largest effect) per sample type, with CIs and BH-adjusted p."""
    parts = [g.sort_values("effect", ascending=False, kind="stable").head(per_type)
             for _, g in sg.groupby("sample_type", sort=False)]
    top = pd.concat(parts, ignore_index=True) if parts else sg.iloc[:0]
    return pd.DataFrame({
        "Sample type": [fmt.sample_type(s) for s in top["sample_type"]],
        "Slice": top["slice"].astype(str),
        "n": [fmt.integer(v) for v in top["n"]],
        **mae_columns(top, unit),
        "Rest MAE": [fmt.num(v) for v in top["mae_rest"]],
        "Effect": [fmt.signed(v) for v in top["effect"]],
        "p": [fmt.pval(v) for v in top["p"]],
        "p adj.": [fmt.pval(v) for v in top["p_adjusted"]],
        "Flagged": ["yes" if str(v).lower() == "true" else "no" for v in top["significant"]],
    })


def split_composition(comp: pd.DataFrame, target: str) -> pd.DataFrame:
    """Per role of the paper split: n, sex shares, mean target and the shortcut's strength (r)."""
    return pd.DataFrame({
        "Set": [ROLE_LABELS.get(r, r) for r in comp["role"]],
        "n": [fmt.integer(v) for v in comp["n"]],
        "Women (%)": [fmt.num(v, 1) for v in comp["female_pct"]],
        "Men (%)": [fmt.num(v, 1) for v in comp["male_pct"]],
        f"Mean {fmt.attribute(target)}": [fmt.num(v) for v in comp["target_mean"]],
        "r shortcut (all)": [fmt.num(v, 3) for v in comp["r_shortcut"]],
        "r shortcut (women)": [fmt.num(v, 3) for v in comp["r_shortcut_female"]],
        "r shortcut (men)": [fmt.num(v, 3) for v in comp["r_shortcut_male"]],
    })


def fidelity(metrics: dict[str, dict]) -> pd.DataFrame:
    """The generator's recorded fidelity figures: what was measured, value, target, whether it is met."""
    rows = []
    for key, m in metrics.items():
        if not isinstance(m, dict):
            continue
        ok = m.get("pass")
        rows.append({"Figure": str(m.get("definition") or key), "Value": fmt.num(m.get("value"), 3),
                     "Target": str(m.get("target") or fmt.DASH),
                     "Met": fmt.DASH if ok is None else ("yes" if ok else "no")})
    return pd.DataFrame(rows, columns=["Figure", "Value", "Target", "Met"])
