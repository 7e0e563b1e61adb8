"""Everything a bias report reads, gathered once: the finished trial directory, its example slices and
the generator's recorded fidelity figures.

The report computes no new numbers: the trial's own files hold the statistics; the generator's
``metrics.json`` (beside the checkpoint the trial recorded, checked against the recorded file hashes)
holds its fidelity figures; it is looked for at the recorded path, then ``$VCT_GENERATOR``, then the shipped
``checkpoints/*``. A trial without example slices (``DIR/examples/``) gets a note, not an error.
:class:`ReportError` says in one line why a directory cannot be reported.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from vctcore.assets import checkpoint_dirs, default_generator, shipped_generator
from vctcore.trial.examples import read_examples
from vctcore.trial.result import PREDICTIONS, TRIAL_JSON, TrialResult, TrialResultError


class ReportError(ValueError):
    """A report that cannot be written (not a finished trial, an unwritable output path): one line."""


@dataclass
class GeneratorCard:
    """The generator's recorded fidelity figures, when its checkpoint directory can be found.

    ``metrics``: ``metrics.json`` as written by the model card (name -> value, target, pass, definition);
    ``path``: the directory they came from; ``note``: why they are missing, when they are;
    ``default_world``: the generator is the shipped default, trained on digital-human phantoms;
    ``support``: the attribute ranges of its training data (manifest ``support``).
    """

    path: Path | None = None
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    support: dict[str, Any] = field(default_factory=dict)
    default_world: bool = False
    phantom_trained: bool = False
    note: str = ""


@dataclass
class ReportSource:
    """A finished trial and what the report shows beside it."""

    result: TrialResult
    examples: list[dict[str, Any]]
    skipped_examples: list[dict[str, Any]]
    examples_present: bool
    generator: GeneratorCard

    @property
    def summary(self) -> dict[str, Any]:
        return self.result.summary

    @property
    def predictions(self) -> pd.DataFrame:
        return self.result.predictions

    @property
    def provenance(self) -> dict[str, Any]:
        return self.summary.get("provenance") or {}

    @property
    def config(self) -> dict[str, Any]:
        return self.summary.get("config") or {}

    @property
    def statistics(self) -> dict[str, Any]:
        return self.config.get("statistics") or {}

    @property
    def design(self) -> str:
        return self.result.design

    def table(self, name: str) -> pd.DataFrame | None:
        """``tables/<name>.csv``, or None when the trial did not write it (or wrote it empty)."""
        t = self.result.tables.get(name)
        return None if t is None or t.empty else t

    @property
    def model_card(self) -> dict[str, Any]:
        return (self.provenance.get("model") or {}).get("card") or {}

    @property
    def unit(self) -> str:
        return str(self.model_card.get("unit", ""))

    @property
    def warnings(self) -> list[str]:
        return [str(w) for w in self.summary.get("warnings") or []]

    @property
    def real_phantoms(self) -> bool:
        """The paper design's real cohort was a pool of digital-human phantoms."""
        return self.design == "paper" and bool(self.config.get("phantoms"))


def check_trial_dir(root: Path) -> None:
    """ReportError naming what is wrong when ``root`` is not a finished trial directory."""
    if not root.exists():
        raise ReportError(f"{root} does not exist")
    if not root.is_dir():
        raise ReportError(f"{root} is not a directory (expected a trial directory written by vct trial)")
    progress = root / "progress.json"
    if progress.exists():
        try:
            stage = json.loads(progress.read_text()).get("stage", "?")
        except ValueError:
            stage = "?"
        raise ReportError(f"{root}: the trial did not finish (last stage {stage!r}; it is running, or was "
                          "stopped: rerun the same vct trial command to finish it)")
    if not (root / TRIAL_JSON).is_file():
        if (root / "config.json").is_file():
            raise ReportError(f"{root}: the trial did not finish (no {TRIAL_JSON}); rerun the same vct trial "
                              "command to finish it")
        raise ReportError(f"{root} is not a trial directory (no {TRIAL_JSON}; vct trial writes one)")
    if not (root / PREDICTIONS).is_file():
        raise ReportError(f"{root}: {TRIAL_JSON} without {PREDICTIONS}; the trial directory is incomplete")


def _files_sha(directory: Path) -> dict[str, str] | None:
    try:
        return dict(json.loads((directory / "manifest.json").read_text()).get("files") or {})
    except (OSError, ValueError):
        return None


def _find_generator(recorded: dict[str, Any]) -> tuple[Path | None, str]:
    """The checkpoint directory whose manifest lists the recorded file hashes: the recorded path first,
    then ``$VCT_GENERATOR``, then every directory under the shipped ``checkpoints/`` directories
    (:func:`vctcore.assets.checkpoint_dirs`)."""
    sha = recorded.get("sha256")
    path = recorded.get("path")
    if not isinstance(sha, dict) or not sha:
        return None, "the trial recorded no generator file hashes"
    candidates = ([Path(path)] if path else []) + [default_generator()]
    for checkpoints in checkpoint_dirs():
        candidates += [m.parent for m in sorted(checkpoints.rglob("manifest.json"))]
    for c in dict.fromkeys(candidates):
        if _files_sha(c) == sha:
            return c, ""
    where = f" at {path}" if path else ""
    return None, (f"the generator the trial used{where} is not on this machine with the same file hashes, "
                  "so its model card cannot be shown")


def generator_card(recorded: dict[str, Any]) -> GeneratorCard:
    """The fidelity figures of the generator described by a trial's ``provenance.generator`` record."""
    path, note = _find_generator(recorded)
    if path is None:
        return GeneratorCard(note=note)
    card = GeneratorCard(path=path)
    try:
        manifest = json.loads((path / "manifest.json").read_text())
        card.support = dict(manifest.get("support") or {})
    except (OSError, ValueError):
        pass
    default_sha = _files_sha(shipped_generator())
    card.default_world = default_sha is not None and default_sha == recorded.get("sha256")
    model_card = path / "model_card.md"
    text = model_card.read_text() if model_card.is_file() else ""
    card.phantom_trained = card.default_world or "digital-human phantoms" in text
    try:
        card.metrics = json.loads((path / "metrics.json").read_text())
    except FileNotFoundError:
        card.note = f"{path} has no metrics.json (the generator's fidelity has not been evaluated)"
    except ValueError as err:
        card.note = f"{path / 'metrics.json'} is not valid JSON ({err})"
    return card


def load_source(trial_dir: str | os.PathLike) -> ReportSource:
    """Read a finished trial directory for the report; ReportError when it is not one."""
    root = Path(trial_dir)
    check_trial_dir(root)
    try:
        result = TrialResult.load(root)
    except TrialResultError as err:
        raise ReportError(str(err)) from None
    except (OSError, ValueError) as err:
        raise ReportError(f"{root}: cannot read the trial's files ({str(err).splitlines()[0]})") from None
    examples, skipped = read_examples(root)
    gen = generator_card((result.summary.get("provenance") or {}).get("generator") or {})
    return ReportSource(result=result, examples=examples, skipped_examples=skipped,
                        examples_present=(root / "examples" / "index.json").is_file(), generator=gen)
