"""The paper design's biased split of a measured real cohort into training, ID test and OOD test sets.

A linear score ``coef[0] * x + coef[1] * y + c`` on *measured* attributes (paper section 4.3.1) puts each
real patient on the ID side (``keep="above"``: score > 0) or the OOD side. ``c`` is one intercept, one
per sex, or chosen per sex so that a share ``ood_fraction`` of each sex lies on the OOD side: in a
population where the body-volume shortcut line is nearly a sex boundary, a per-sex line keeps both
sexes on both sides, so the trial tests the shortcut rather than sex.

Patients are drawn into roles in a fixed pseudo-random order (a digest of ``seed`` and the patient id,
independent of the task), so two tasks on the same pool share most of their test patients and the
synthetic and reconstructed patients made for them: the first ``sizes['ood']`` OOD-side patients are the
OOD test set, the first ``sizes['id']`` ID-side patients the ID test set, the next ``sizes['train']`` the
training set.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vctcore.trial.config import SplitSettings

ROLES = ("train", "id_test", "ood_test", "unused")
ERR_TOO_SMALL = ("the split leaves {have} patient(s) on the {side} side of {rule}, but sizes ask for {want} "
                 "({what}); move the boundary (split.intercept / split.ood_fraction), lower the sizes or "
                 "use a larger real cohort")


class SplitError(ValueError):
    """A split that leaves a side empty or too small for the requested sizes."""


@dataclass(frozen=True)
class ResolvedSplit:
    """A split with its intercept per sex fixed: ``intercepts['F']``, ``intercepts['M']``."""

    x: str
    y: str
    coef: tuple[float, float]
    keep: str
    intercepts: dict[str, float]

    def score(self, df: pd.DataFrame) -> np.ndarray:
        """Signed score per row (> 0 above the line) with each row's sex's intercept."""
        sex = df["sex"].astype(str).to_numpy()
        c = np.array([self.intercepts.get(s, np.nan) for s in sex], dtype=float)
        x = pd.to_numeric(df[self.x], errors="coerce").to_numpy(float)
        y = pd.to_numeric(df[self.y], errors="coerce").to_numpy(float)
        return self.coef[0] * x + self.coef[1] * y + c

    def in_id(self, df: pd.DataFrame) -> np.ndarray:
        """True where a row lies on the ID side (NaN scores are on neither side: False here)."""
        s = self.score(df)
        return s > 0 if self.keep == "above" else s < 0

    def in_ood(self, df: pd.DataFrame) -> np.ndarray:
        s = self.score(df)
        return s < 0 if self.keep == "above" else s > 0

    def describe(self) -> str:
        (a, b) = self.coef
        op = ">" if self.keep == "above" else "<"
        cs = sorted(set(self.intercepts.values()))
        c = f"{cs[0]:+g}" if len(cs) == 1 else "+ c_sex (" + ", ".join(
            f"{k}: {v:+.3f}" for k, v in sorted(self.intercepts.items())) + ")"
        return f"{a:g}*{self.x} {b:+g}*{self.y} {c} {op} 0 (ID side)"

    def to_dict(self) -> dict:
        return {"x": self.x, "y": self.y, "coef": list(self.coef), "keep": self.keep, "intercepts": self.intercepts,
                "rule": self.describe()}


def resolve_split(settings: SplitSettings, measured: pd.DataFrame) -> ResolvedSplit:
    """Fix the intercept(s) of ``settings`` on the measured real cohort (columns sex, x, y)."""
    if settings.ood_fraction is None:
        c = settings.intercept
        intercepts = dict(c) if isinstance(c, dict) else {"F": float(c), "M": float(c)}
        return ResolvedSplit(settings.x, settings.y, settings.coef, settings.keep, intercepts)
    raw = ResolvedSplit(settings.x, settings.y, settings.coef, settings.keep, {"F": 0.0, "M": 0.0}).score(measured)
    sex = measured["sex"].astype(str).to_numpy()
    intercepts = {}
    for s in ("F", "M"):
        t = np.sort(raw[(sex == s) & np.isfinite(raw)])
        if t.size < 2:
            continue
        # k patients of this sex on the OOD side (the low end of the score when keep == "above"), the line
        # midway between the k-th and the next, so that nobody lies on it
        k = int(np.clip(round(settings.ood_fraction * t.size), 1, t.size - 1))
        cut = 0.5 * (t[k - 1] + t[k]) if settings.keep == "above" else 0.5 * (t[-k - 1] + t[-k])
        intercepts[s] = -float(cut)
    return ResolvedSplit(settings.x, settings.y, settings.coef, settings.keep, intercepts)


def draw_order(ids: pd.Series, seed: int) -> np.ndarray:
    """A permutation of ``ids``' positions fixed by ``seed`` and each id (not by the table's order)."""
    keys = [hashlib.sha256(f"{seed}:{i}".encode()).hexdigest() for i in ids.astype(str)]
    return np.argsort(np.array(keys), kind="stable")


def assign_roles(measured: pd.DataFrame, split: ResolvedSplit, sizes: dict[str, int], *, seed: int = 0) -> pd.DataFrame:
    """``measured`` (columns id, sex and the split's axes) with ``score``, ``side`` ("ID", "OOD" or "" on
    the line or unmeasured) and ``role`` (one of :data:`ROLES`) added. SplitError when a side is too
    small for ``sizes`` (train, id, ood)."""
    df = measured.reset_index(drop=True).copy()
    df["score"] = split.score(df)
    df["side"] = np.where(split.in_id(df), "ID", np.where(split.in_ood(df), "OOD", ""))
    df["role"] = "unused"
    order = draw_order(df["id"], seed)
    id_pos = [i for i in order if df.at[i, "side"] == "ID"]
    ood_pos = [i for i in order if df.at[i, "side"] == "OOD"]
    need_id = sizes["id"] + sizes["train"]
    if len(ood_pos) < sizes["ood"]:
        raise SplitError(ERR_TOO_SMALL.format(have=len(ood_pos), side="OOD", rule=split.describe(), want=sizes["ood"],
                                              what="sizes.ood"))
    if len(id_pos) < need_id:
        raise SplitError(ERR_TOO_SMALL.format(have=len(id_pos), side="ID", rule=split.describe(), want=need_id,
                                              what=f"sizes.id {sizes['id']} + sizes.train {sizes['train']}"))
    df.loc[ood_pos[: sizes["ood"]], "role"] = "ood_test"
    df.loc[id_pos[: sizes["id"]], "role"] = "id_test"
    df.loc[id_pos[sizes["id"]: need_id], "role"] = "train"
    return df


def _r(g: pd.DataFrame, x: str, y: str) -> float:
    return float(g[[x, y]].astype(float).corr().iloc[0, 1]) if len(g) > 2 else np.nan


def composition(roles: pd.DataFrame, target: str, x: str) -> pd.DataFrame:
    """Per role: n, share of women and men, mean target, and the Pearson r of ``x`` (body volume) with
    the target over the role and within each sex (the shortcut's strength; paper: r = 0.872 in its BFP
    training set, -0.696 in its MMP one)."""
    rows = []
    for role in ROLES[:3]:
        g = roles[roles["role"] == role]
        if g.empty:
            continue
        rows.append({"role": role, "n": len(g), "female_pct": 100.0 * float((g["sex"] == "F").mean()),
                     "male_pct": 100.0 * float((g["sex"] == "M").mean()), "target_mean": float(g[target].mean()),
                     "r_shortcut": _r(g, x, target), "r_shortcut_female": _r(g[g["sex"] == "F"], x, target),
                     "r_shortcut_male": _r(g[g["sex"] == "M"], x, target)})
    return pd.DataFrame(rows)
