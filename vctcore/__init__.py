"""vctcore: the science behind the vct virtual-clinical-trials workbench (no UI code here).

The public API, each name imported on first use (``import vctcore`` imports neither torch nor numpy):

    PopulationSpec        a target population (YAML/dict), sampled into an attribute table (vctcore.population)
    build_phantom_cohort  digital-human phantoms of a population into a cohort directory (vctcore.phantom.cohort)
    Generator             the conditional CT generator: Generator.from_pretrained().generate(table, seed)
    generate_cohort       a synthetic cohort directory from a generator and a table (vctcore.synthetic_cohort)
    measure               measure one CT: measure(ct, seg=None, backend="auto") -> Measurements (vctcore.measure)
    measure_cohort        measure every patient of a cohort directory into measurements.csv
    run_trial             run (or resume) a virtual clinical trial from its config (vctcore.trial.run)
    write_report          the PDF bias report of a finished trial directory (vctcore.report)
    Progress              the progress callback every long job takes: progress(done, total, message)

Shipped files (the default generator, reference models, population specs, trial configs) are found by
:mod:`vctcore.assets`.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> (module, attribute in it; None: the module itself)
_API: dict[str, tuple[str, str | None]] = {
    "PopulationSpec": ("vctcore.population", "PopulationSpec"),
    "build_phantom_cohort": ("vctcore.phantom.cohort", "build_cohort"),
    "Generator": ("vctcore.generator", "Generator"),
    "generate_cohort": ("vctcore.synthetic_cohort", "generate_cohort"),
    # the measurement package is callable as its measure(): a submodule and a function cannot share the name
    "measure": ("vctcore.measure", None),
    "measure_cohort": ("vctcore.measure.cohort", "measure_cohort"),
    "run_trial": ("vctcore.trial.run", "run_trial"),
    "write_report": ("vctcore.report.document", "write_report"),
    "Progress": ("vctcore.progress", "Progress"),
}
__all__ = sorted(_API)

if TYPE_CHECKING:
    from vctcore.generator import Generator  # noqa: F401
    from vctcore.measure.api import measure  # noqa: F401
    from vctcore.measure.cohort import measure_cohort  # noqa: F401
    from vctcore.phantom.cohort import build_cohort as build_phantom_cohort  # noqa: F401
    from vctcore.population import PopulationSpec  # noqa: F401
    from vctcore.progress import Progress  # noqa: F401
    from vctcore.report.document import write_report  # noqa: F401
    from vctcore.synthetic_cohort import generate_cohort  # noqa: F401
    from vctcore.trial.run import run_trial  # noqa: F401


def __getattr__(name: str) -> Any:
    """The public API's ``name``, imported now (and kept, so the import happens once)."""
    if name not in _API:
        raise AttributeError(f"module 'vctcore' has no attribute {name!r}")
    module, attr = _API[name]
    mod = importlib.import_module(module)
    if attr is None:
        return mod
    value = getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
