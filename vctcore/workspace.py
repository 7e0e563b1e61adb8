"""The on-disk workspace the app and CLI share: cohorts live in ``<workspace>/cohorts/<name>/``.

The workspace root is ``$VCT_WORKSPACE``, else ``workspace/`` in the repository checkout the package runs from,
else (an installed package) ``./workspace`` in the current directory.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vctcore.assets import source_tree
from vctcore.cohort import read_provenance

#: a name the app may turn into a workspace file or folder (trial, cohort, saved population): 1-64 letters,
#: digits, '_' or '-', starting with a letter or digit, so never a path
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def workspace_root() -> Path:
    """``$VCT_WORKSPACE``, else ``<checkout>/workspace`` in a source checkout, else ``./workspace``."""
    env = os.environ.get("VCT_WORKSPACE")
    if env:
        return Path(env)
    tree = source_tree()
    return (tree if tree is not None else Path.cwd()) / "workspace"


@dataclass(frozen=True)
class CohortInfo:
    """A cohort directory and what made it (cohort.json)."""

    name: str
    path: Path
    provenance: dict[str, Any]
    n_patients: int

    @property
    def maker(self) -> str:
        return str(self.provenance.get("maker", "unknown"))


def list_cohorts(root: Path | None = None) -> list[CohortInfo]:
    """Cohorts under ``<root>/cohorts`` (directories with an attributes.csv), sorted by name."""
    base = (root or workspace_root()) / "cohorts"
    out = []
    for d in sorted(base.glob("*/attributes.csv")):
        prov = read_provenance(d.parent)
        n = sum(1 for p in (d.parent / "patients").glob("*/ct.nii.gz"))
        out.append(CohortInfo(d.parent.name, d.parent, prov, n))
    return out
