"""Synthetic cohorts as background jobs, for the app: a generation request checked and turned into its
``vct generate`` command, an estimate of its time on this machine, and starting it.

    <workspace>/populations/<name>.yaml   population specs saved by the app
    <workspace>/cohorts/<name>/           the cohort a generation job writes (resumable)
    <workspace>/jobs/<id>/                the job's record (:mod:`vctcore.jobs`)
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from vctcore.workspace import NAME_RE, CohortInfo, workspace_root


class GenerateRequestError(ValueError):
    """A generation request that cannot start; the message names the field."""


def cohort_dir(name: str, root: Path | None = None) -> Path:
    """``<workspace>/cohorts/<name>``; GenerateRequestError when ``name`` cannot name a directory."""
    if not NAME_RE.match(name or ""):
        raise GenerateRequestError(f"cohort name {name!r}: use 1-64 letters, digits, '_' or '-', starting with a "
                                   "letter or digit")
    return (root or workspace_root()) / "cohorts" / name


@dataclass(frozen=True)
class GenerateRequest:
    """What a generation job makes: ``n`` patients sampled from ``population`` with ``seed``, written to
    the cohort ``name``; ``steps`` and ``guidance`` None mean the checkpoint's own."""

    population: Path
    n: int
    seed: int
    name: str
    steps: int | None = None
    guidance: float | None = None
    checkpoint: Path | None = None
    device: str = "auto"

    def check(self) -> GenerateRequest:
        """The request itself after checking every field (GenerateRequestError naming the first bad one);
        the population spec is parsed and sampled once, so its own error shows before anything starts."""
        from vctcore.population import PopulationSpec

        if not 1 <= int(self.n) <= 100_000:
            raise GenerateRequestError(f"patients: {self.n} is not between 1 and 100000")
        if self.steps is not None and not 1 <= int(self.steps) <= 1000:
            raise GenerateRequestError(f"steps: {self.steps} is not between 1 and 1000")
        if self.guidance is not None and not 0.0 <= float(self.guidance) <= 20.0:
            raise GenerateRequestError(f"guidance: {self.guidance} is not between 0 and 20")
        cohort_dir(self.name)
        try:
            PopulationSpec.from_yaml(self.population).sample(1, seed=int(self.seed))
        except (OSError, ValueError) as err:
            raise GenerateRequestError(f"population {Path(self.population).name}: {err}") from None
        return self

    def command(self, root: Path | None = None) -> list[str]:
        """``vct generate`` arguments (without the program) for this request."""
        args = ["generate", "--population", str(Path(self.population).resolve()), "--n", str(int(self.n)),
                "--seed", str(int(self.seed)), "--out", str(cohort_dir(self.name, root).resolve()),
                "--device", self.device]
        if self.steps is not None:
            args += ["--steps", str(int(self.steps))]
        if self.guidance is not None:
            args += ["--guidance", f"{float(self.guidance):g}"]
        if self.checkpoint is not None:
            args += ["--checkpoint", str(Path(self.checkpoint).resolve())]
        return args


def start_generation(request: GenerateRequest, root: Path | None = None):
    """Check ``request`` and start it as a background ``vct generate`` job writing its cohort; returns the
    :class:`vctcore.jobs.Job`. GenerateRequestError for a bad request, JobError when a running job already
    writes that cohort. A finished or half-written cohort of the same name is resumed, not overwritten."""
    from vctcore.jobs import start_job

    request.check()
    out = cohort_dir(request.name, root)
    return start_job(request.command(root), kind="generate", title=f"generate {request.name} ({request.n} patients)",
                     output=out, root=root)


def seconds_per_patient(cohorts: list[CohortInfo], device: str = "cpu",
                        checkpoint_sha256: dict[str, str] | None = None) -> float | None:
    """The median seconds per patient that generation took on ``device`` for ``cohorts`` (a workspace's
    :func:`vctcore.workspace.list_cohorts`): the synthetic ones' ``seconds_per_patient`` (cohort.json) made by
    the generator with these file hashes (any, when None), else the trial patient store's; None before the
    first."""
    def same(prov: dict) -> bool:
        return checkpoint_sha256 is None or prov.get("checkpoint_sha256") == checkpoint_sha256

    rates = [float(c.provenance["seconds_per_patient"]) for c in cohorts
             if c.provenance.get("maker") == "vctcore.generator" and c.provenance.get("seconds_per_patient")
             and str(c.provenance.get("device", "")).split(":")[0] == device.split(":")[0] and same(c.provenance)]
    if rates:
        return statistics.median(rates)
    if device.startswith("cpu"):
        from vctcore.trial.catalog import seconds_per_patient as store_rate

        return store_rate()
    return None
