"""Our paper-design trials beside the seed paper's Tables 1-4, as Markdown (for notes and reviews).

Reads the ``tables/*.csv`` a finished paper trial wrote (``vct trial --config assets/trials/paper_*.yaml``)
and prints each table with the paper's published figures in the neighbouring columns. The paper's values
are transcribed from ``../shared/paper/vct-paper.txt`` (Tables 1-4); nothing here recomputes a statistic.

    python bench/paper_compare.py workspace/trials/paper_bfp [workspace/trials/paper_mmp ...]
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

# Paper Table 1: (task, population, sample_type) -> (n, MAE, Z, p).
PAPER_T1 = {
    ("bfp_pct", "ID", "real"): (75, 1.20, None, None),
    ("bfp_pct", "ID", "reconstructed"): (75, 1.34, 0.97, 0.368),
    ("bfp_pct", "ID", "synthetic"): (150, 1.50, 2.33, 0.103),
    ("bfp_pct", "ID", "synthetic_rebiased"): (91, 1.22, 0.10, 0.481),
    ("bfp_pct", "OOD", "real"): (75, 3.66, None, None),
    ("bfp_pct", "OOD", "real_weighted"): (75, 1.31, None, None),
    ("bfp_pct", "OOD", "reconstructed"): (75, 4.07, 0.90, 0.387),
    ("bfp_pct", "OOD", "synthetic"): (150, 3.69, 0.08, 0.461),
    ("bfp_pct", "OOD", "synthetic_rebiased"): (94, 3.86, 0.53, 0.439),
    ("mmp_pct", "ID", "real"): (75, 1.43, None, None),
    ("mmp_pct", "ID", "reconstructed"): (75, 1.36, -0.33, 0.480),
    ("mmp_pct", "ID", "synthetic"): (150, 1.92, 2.74, 0.063),
    ("mmp_pct", "ID", "synthetic_rebiased"): (94, 1.58, 0.90, 0.379),
    ("mmp_pct", "OOD", "real"): (75, 5.54, None, None),
    ("mmp_pct", "OOD", "real_weighted"): (75, 1.65, None, None),
    ("mmp_pct", "OOD", "reconstructed"): (75, 4.58, -2.41, 0.090),
    ("mmp_pct", "OOD", "synthetic"): (150, 4.34, -3.44, 0.026),
    ("mmp_pct", "OOD", "synthetic_rebiased"): (80, 5.10, -1.17, 0.324),
}
# Paper Table 2: (task, attribute) -> (r real, r synthetic, p of the difference).
PAPER_T2 = {
    ("bfp_pct", "body_volume_l"): (-0.190, -0.117, 0.481),
    ("bfp_pct", "bfp_pct"): (0.482, 0.483, 0.989),
    ("mmp_pct", "body_volume_l"): (-0.469, -0.407, 0.468),
    ("mmp_pct", "bfp_pct"): (0.114, 0.012, 0.333),
}
# Paper Table 3: task -> {sample_type: (MAE, sd)}.
PAPER_T3 = {
    "bfp_pct": {"real": (0.72, 0.59), "reconstructed": (0.71, 0.63), "synthetic": (0.61, 0.55)},
    "mmp_pct": {"real": (0.68, 0.55), "reconstructed": (0.68, 0.55), "synthetic": (0.73, 0.57)},
}
# Paper Table 4 (impurity importances): task -> feature -> (real, reconstructed, synthetic); and the
# correlation of the reconstructed and synthetic importances with the real ones.
_FEATURES = ("sex", "age_years", "height_cm", "weight_kg", "bfp_pct", "bone_density_hu", "mmp_pct", "body_volume_l")
PAPER_T4 = {
    "bfp_pct": dict(zip(_FEATURES, [(0.001, 0.001, 0.055), (0.040, 0.046, 0.031), (0.062, 0.046, 0.036),
                                    (0.045, 0.086, 0.057), (0.033, 0.040, 0.040), (0.023, 0.041, 0.076),
                                    (0.763, 0.700, 0.652), (0.033, 0.041, 0.055)])),
    "mmp_pct": dict(zip(_FEATURES, [(0.006, 0.003, 0.001), (0.010, 0.020, 0.020), (0.068, 0.028, 0.027),
                                    (0.180, 0.226, 0.324), (0.081, 0.059, 0.054), (0.024, 0.023, 0.033),
                                    (0.506, 0.516, 0.424), (0.124, 0.124, 0.118)])),
}
PAPER_T4_CORR = {"bfp_pct": (0.998, 0.993), "mmp_pct": (0.991, 0.919)}


def _f(x: object, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def table1(t1: pd.DataFrame) -> str:
    """Table 1 rows: ours (n, MAE [CI], Z, p, verdict) beside the paper's (n, MAE, Z, p)."""
    rows = []
    for r in t1.itertuples():
        paper = PAPER_T1.get((r.task, r.population, r.sample_type), (None,) * 4)
        ci = f"{_f(r.mae)} [{_f(r.mae_low)}, {_f(r.mae_high)}]" if r.n else ""
        rows.append([r.population, r.sample_type, _f(int(r.n)), ci, _f(r.z), _f(r.p, 3), r.verdict if r.n else "",
                     _f(paper[0]), _f(paper[1]), _f(paper[2]), _f(paper[3], 3)])
    return _md(["population", "sample type", "n", "MAE [95 % CI]", "Z", "p", "verdict",
                "paper n", "paper MAE", "paper Z", "paper p"], rows)


def table2(t2: pd.DataFrame) -> str:
    """Table 2: r(error, bias attribute), real vs synthetic, with the paper's."""
    t2 = t2[t2["compared_with"] == "synthetic"]
    rows = []
    for r in t2.itertuples():
        paper = PAPER_T2.get((r.task, r.attribute), (None,) * 3)
        rows.append([r.attribute, _f(r.r_real, 3), _f(r.r_other, 3), _f(r.p_difference, 3),
                     _f(paper[0], 3), _f(paper[1], 3), _f(paper[2], 3)])
    return _md(["attribute", "r real", "r synthetic", "p diff", "paper r real", "paper r synthetic", "paper p"], rows)


def table3(t3: pd.DataFrame) -> str:
    """Table 3: the random forest's cross-validated MAE of |error| per sample type, with the paper's."""
    rows = []
    for r in t3.itertuples():
        paper = PAPER_T3.get(r.task, {}).get(r.sample_type)
        rows.append([r.sample_type, _f(int(r.n)), f"{_f(r.mae)} ± {_f(r.sd)}", _f(r.mean_abs_error),
                     f"{_f(paper[0])} ± {_f(paper[1])}" if paper else ""])
    return _md(["sample type", "n", "RF MAE of |error|", "mean |error|", "paper"], rows)


def table4(t4: pd.DataFrame, corr: pd.DataFrame) -> str:
    """Table 4: impurity importances per sample type (ours / paper) and their correlation with real."""
    task = t4["task"].iloc[0]
    wide = t4.pivot(index="feature", columns="sample_type", values="impurity_mean")
    paper = PAPER_T4.get(task, {})
    rows = []
    for feat in _FEATURES:
        ours = [_f(wide.loc[feat, s], 3) if feat in wide.index and s in wide else ""
                for s in ("real", "reconstructed", "synthetic")]
        rows.append([feat, *ours, *(_f(v, 3) for v in paper.get(feat, ("",) * 3))])
    c = {r.sample_type: r for r in corr.itertuples()} if not corr.empty else {}
    pc = PAPER_T4_CORR.get(task, (None, None))
    rows.append(["correlation with real (impurity / permutation)", "",
                 *(f"{_f(c[s].r_impurity, 3)} / {_f(c[s].r_permutation, 3)}" if s in c else ""
                   for s in ("reconstructed", "synthetic")), "", _f(pc[0], 3), _f(pc[1], 3)])
    return _md(["feature", "real", "reconstructed", "synthetic", "paper real", "paper recon.", "paper synth."], rows)


def compare(trial_dir: Path) -> str:
    """Markdown of one trial's Tables 1-4 beside the paper's."""
    t = trial_dir / "tables"
    parts = [f"## {trial_dir.name}", "### Table 1", table1(pd.read_csv(t / "table1.csv"))]
    if (t / "table2.csv").is_file():
        parts += ["### Table 2", table2(pd.read_csv(t / "table2.csv"))]
    if (t / "table3.csv").is_file():
        parts += ["### Table 3", table3(pd.read_csv(t / "table3.csv"))]
    if (t / "table4.csv").is_file():
        corr_path = t / "importance_correlation.csv"
        corr = pd.read_csv(corr_path) if corr_path.is_file() else pd.DataFrame()
        parts += ["### Table 4 (impurity importance)", table4(pd.read_csv(t / "table4.csv"), corr)]
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trials", nargs="+", type=Path, help="finished paper-design trial directories")
    args = p.parse_args(argv)
    print("\n\n".join(compare(d) for d in args.trials))


if __name__ == "__main__":
    main()
