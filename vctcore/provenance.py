"""One provenance record for every artifact vctcore writes (cohort.json, measurements.json, trial.json,
fidelity.json, checker-model manifests, model cards, the height calibration).

    provenance(seeds=..., config=..., inputs=...) ->
        {"created_utc": "2026-01-31T12:00:00Z",                      UTC, ISO 8601, seconds, "Z"
         "versions": {"vctcore": ..., "python": ..., "numpy": ..., "torch": ..., ...},   installed ones only
         "machine": {"platform": ..., "cpu": ..., "cores": ..., "python": ...},
         "seeds": {...}, "config": {...}, "inputs_sha256": {name: sha256}}  only those the caller gives

The artifact's own fields sit beside these keys. Versions come from the installed distributions' metadata,
so recording them imports nothing heavy. Files written before this record existed name the versions
``package_versions`` (generator manifests, by the training code) or ``vctcore_version`` (the shipped height
calibration): :func:`read_versions` reads all three. Only the standard library is imported here.
"""
from __future__ import annotations

import datetime as dt
import functools
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vctcore import __version__

#: distributions whose versions are recorded when installed, by distribution name
PACKAGES = ("numpy", "scipy", "pandas", "nibabel", "pydicom", "torch", "monai", "scikit-learn", "scikit-image",
            "shap", "onnx", "onnxruntime", "plotly", "reportlab", "TotalSegmentator")


def utc_now() -> str:
    """The current time in UTC as ISO 8601 to the second with a "Z" suffix, e.g. "2026-01-31T12:00:00Z"."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def package_versions() -> dict[str, str]:
    """``vctcore``, ``python`` and every installed distribution of :data:`PACKAGES` -> its version string
    (a fresh copy per call of one cached lookup)."""
    return dict(_installed_versions())


@functools.cache
def _installed_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"vctcore": __version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name as the kernel reports it (e.g. "AMD EPYC"); "" where unknown."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def machine() -> dict[str, Any]:
    """What runs this process: ``platform`` (OS string), ``cpu`` (model name), ``cores`` (logical CPUs),
    ``python`` (version)."""
    return {"platform": platform.platform(), "cpu": cpu_model(), "cores": os.cpu_count(),
            "python": platform.python_version()}


def provenance(*, seeds: Mapping[str, Any] | None = None, config: Any = None,
               inputs: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The provenance record (module docstring): creation time, package versions and machine, plus the
    caller's ``seeds`` (name -> seed), ``config`` (plain data) and ``inputs`` (name -> sha256 hex digest of
    an input file) when given."""
    rec: dict[str, Any] = {"created_utc": utc_now(), "versions": package_versions(), "machine": machine()}
    if seeds is not None:
        rec["seeds"] = dict(seeds)
    if config is not None:
        rec["config"] = config
    if inputs is not None:
        rec["inputs_sha256"] = dict(inputs)
    return rec


def read_versions(record: Mapping[str, Any]) -> dict[str, str]:
    """The package versions a record names, whatever it calls them: ``versions`` (this module),
    ``package_versions`` (generator manifests' ``training``) or ``vctcore_version`` alone; {} for none."""
    for key in ("versions", "package_versions"):
        value = record.get(key)
        if isinstance(value, Mapping) and value:
            return {str(k): str(v) for k, v in value.items()}
    if record.get("vctcore_version"):
        return {"vctcore": str(record["vctcore_version"])}
    return {}
