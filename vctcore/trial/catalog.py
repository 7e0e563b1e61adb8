"""The trials of a workspace, for the app: shipped configurations, an audit configuration built from a
page's choices, finished and running trials, and starting a trial as a background job.

    <workspace>/trials/<name>.yaml    a trial configuration written by the app
    <workspace>/trials/<name>/        its trial directory (:mod:`vctcore.trial.result`)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vctcore.trial.config import TrialConfig, TrialConfigError, load_config, parse_config
from vctcore.trial.result import TRIAL_JSON, TrialResultError, read_summary
from vctcore.assets import population_specs, trials_dir
from vctcore.workspace import NAME_RE, workspace_root

#: the shipped trial configurations and CSV populations (:func:`vctcore.assets.trials_dir`)
SHIPPED_TRIALS = trials_dir()
TRIALS = "trials"


def trials_root(root: Path | None = None) -> Path:
    return (root or workspace_root()) / TRIALS


def shipped_configs() -> list[Path]:
    """The trial configurations shipped in assets/trials, by name."""
    return sorted(SHIPPED_TRIALS.glob("*.yaml"))


def shipped_populations() -> list[Path]:
    """The population specs shipped in assets/populations, by name."""
    return population_specs()


def check_name(name: str) -> str:
    """``name`` when it can name a trial directory; TrialConfigError otherwise."""
    if not NAME_RE.match(name or ""):
        raise TrialConfigError(f"trial name {name!r}: use 1-64 letters, digits, '_' or '-', starting with a letter "
                               "or digit")
    return name


def population(name: str, *, spec: str | Path | None = None, csv: str | Path | None = None,
               n: int | None = None) -> dict[str, Any]:
    """One population entry of an audit configuration (a spec sampled ``n`` rows, or a CSV's rows)."""
    d: dict[str, Any] = {"name": name}
    if spec is not None:
        d["spec"] = str(spec)
    if csv is not None:
        d["csv"] = str(csv)
    if n is not None:
        d["n"] = int(n)
    return d


def audit_config(name: str, *, model: str | Path, reference: dict[str, Any], targets: list[dict[str, Any]],
                 seed: int = 0, oversample: int = 1, steps: int | None = None, n_boot: int = 2000,
                 min_slice: int = 8, description: str = "") -> dict[str, Any]:
    """An audit configuration (a mapping as in assets/trials/audit_example.yaml), checked by the trial's
    own parser: TrialConfigError with the config's message for a bad choice."""
    generator: dict[str, Any] = {"oversample": int(oversample), "seed": int(seed)}
    if steps is not None:
        generator["steps"] = int(steps)
    cfg = {"name": check_name(name), "design": "audit",
           "description": description or f"Audit of {Path(model).name} built in the app",
           "model": {"path": str(model)}, "reference_population": reference, "target_populations": targets,
           "generator": generator, "measurement": {"segmentation": "own"},
           "statistics": {"n_boot": int(n_boot), "seed": int(seed), "subgroups": {"n_bins": 3, "min_size": int(min_slice)}}}
    parse_config(cfg, base=Path("/"))
    return cfg


def write_config(cfg: dict[str, Any], root: Path | None = None) -> Path:
    """Write ``cfg`` as ``<workspace>/trials/<name>.yaml`` (checked again on read); returns the path."""
    path = trials_root(root) / f"{check_name(cfg['name'])}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    load_config(path)
    return path


@dataclass(frozen=True)
class TrialInfo:
    """A trial directory of the workspace: ``finished`` when its trial.json exists; ``summary`` then."""

    name: str
    path: Path
    finished: bool
    summary: dict[str, Any] | None

    @property
    def design(self) -> str:
        return str((self.summary or {}).get("design", ""))

    def verdict_line(self) -> str:
        """One line: each population's synthetic verdict (paper trials: also real)."""
        if not self.summary:
            return "not finished"
        parts = []
        for v in self.summary.get("verdicts", []):
            if v.get("sample_type") in ("synthetic", "real") and v.get("verdict"):
                parts.append(f"{v['population']} {v['sample_type']}: {v['verdict']}")
        return "; ".join(parts) or "no verdicts"


def list_trials(root: Path | None = None) -> list[TrialInfo]:
    """Trial directories under ``<workspace>/trials`` (those with trial.json or progress.json/config.json),
    finished ones with their summary; newest first."""
    out = []
    base = trials_root(root)
    for d in sorted((p for p in base.glob("*") if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True):
        if (d / TRIAL_JSON).is_file():
            try:
                out.append(TrialInfo(d.name, d, True, read_summary(d)))
            except TrialResultError:
                continue
        elif (d / "config.json").is_file() or (d / "progress.json").is_file():
            out.append(TrialInfo(d.name, d, False, None))
    return out


def trial_command(config: Path, out: Path) -> list[str]:
    """The ``vct`` arguments that run (or resume) the trial of ``config`` into ``out``."""
    return ["trial", "--config", str(config), "--out", str(out), "--quiet"]


def start_trial(config: Path, root: Path | None = None):
    """Start the trial of ``config`` as a background job writing ``<workspace>/trials/<name>/``; returns the
    :class:`vctcore.jobs.Job`. TrialConfigError for a bad config, JobError when it is already running."""
    from vctcore.jobs import start_job

    cfg: TrialConfig = load_config(config)
    out = trials_root(root) / check_name(cfg.name)
    return start_job(trial_command(Path(config).resolve(), out), kind="trial", title=f"trial {cfg.name}", output=out,
                     root=root)


def seconds_per_patient(cache: Path | None = None, last: int = 20) -> float | None:
    """The median time the generator took per synthetic patient on this machine: the ``last`` patients
    most recently made in the patient store (their meta.json); None before the first."""
    import json
    import statistics

    from vctcore.trial.run import default_cache
    from vctcore.trial.store import META

    base = Path(cache or default_cache()) / "synthetic"
    metas = sorted(base.glob(f"*/*/{META}"), key=lambda p: p.stat().st_mtime)[-last:]
    secs = []
    for m in metas:
        try:
            secs.append(float(json.loads(m.read_text())["seconds"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return statistics.median(secs) if secs else None
