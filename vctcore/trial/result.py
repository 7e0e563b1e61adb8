"""A trial directory: what ``vct trial`` writes and the app and the report read back.

    DIR/trial.json          config, headline figures, verdicts, warnings, provenance, wall time per stage
    DIR/predictions.csv     one row per evaluated image (see PREDICTION_COLUMNS, and ``image_dir``: the
                            patient's directory, ct.nii.gz + seg.nii.gz); sample_type
                            "synthetic_rebiased" repeats the synthetic rows the re-biasing kept
    DIR/tables/<name>.csv   Tables 1-4, importances with spread, SHAP values, the subgroup scan, the split
    DIR/model/              the reference model trained by a paper trial (weights + card)
    DIR/progress.json       the running stage (while a trial runs)

Files are replaced atomically; a directory with ``trial.json`` is a finished trial.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from vctcore.cohort import _atomic_text
from vctcore.jsonsafe import json_safe
from vctcore.trial.attribution import FEATURES

TRIAL_JSON, PREDICTIONS, TABLES = "trial.json", "predictions.csv", "tables"
SCHEMA = "vct-trial/1"
SAMPLE_TYPES = ("real", "reconstructed", "synthetic", "synthetic_rebiased")
PREDICTION_COLUMNS = ("task", "population", "sample_type", "patient_id", "source_id", "y_true", "y_pred",
                      "abs_error", *FEATURES)


class TrialResultError(ValueError):
    """A directory that is not a finished trial."""


def read_summary(root: str | os.PathLike) -> dict[str, Any]:
    """A finished trial's trial.json (checked: present, JSON, this schema) without its tables;
    TrialResultError otherwise."""
    root = Path(root)
    if not (root / TRIAL_JSON).is_file():
        raise TrialResultError(f"{root}: not a finished trial (no {TRIAL_JSON})")
    try:
        summary = json.loads((root / TRIAL_JSON).read_text())
    except ValueError as err:
        raise TrialResultError(f"{root / TRIAL_JSON}: not valid JSON ({err})") from None
    if summary.get("schema") != SCHEMA:
        raise TrialResultError(f"{root / TRIAL_JSON}: schema {summary.get('schema')!r}, expected {SCHEMA!r}")
    return summary


@dataclass
class TrialResult:
    """A finished trial read back from its directory."""

    root: Path
    summary: dict[str, Any]
    predictions: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    @classmethod
    def load(cls, root: str | os.PathLike) -> TrialResult:
        root = Path(root)
        summary = read_summary(root)
        preds = pd.read_csv(root / PREDICTIONS, dtype={"patient_id": str, "source_id": str})
        tables = {p.stem: pd.read_csv(p) for p in sorted((root / TABLES).glob("*.csv"))}
        return cls(root, summary, preds, tables)

    @property
    def name(self) -> str:
        return str(self.summary.get("name", self.root.name))

    @property
    def design(self) -> str:
        return str(self.summary.get("design", ""))

    def verdicts(self) -> pd.DataFrame:
        """One row per (task, population, sample type) with n, MAE and CI (percentage points), verdict."""
        return pd.DataFrame(self.summary.get("verdicts", []))


def write_result(root: Path, summary: dict[str, Any], predictions: pd.DataFrame,
                 tables: dict[str, pd.DataFrame]) -> Path:
    """Write a trial directory (tables and predictions first, ``trial.json`` last)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        if table.empty and not len(table.columns):
            continue
        _atomic_text(root / TABLES / f"{name}.csv", table.to_csv(index=False))
    cols = [c for c in PREDICTION_COLUMNS if c in predictions.columns]
    cols += [c for c in predictions.columns if c not in cols]
    _atomic_text(root / PREDICTIONS, predictions[cols].to_csv(index=False))
    _atomic_text(root / TRIAL_JSON, json.dumps(json_safe({"schema": SCHEMA, **summary}), indent=2))
    return root / TRIAL_JSON
