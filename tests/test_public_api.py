"""The public API at the package's top level: every name resolves, and ``import vctcore`` stays cheap."""
from __future__ import annotations

import inspect
import subprocess
import sys

import vctcore

API = ["Generator", "PopulationSpec", "Progress", "build_phantom_cohort", "generate_cohort", "measure",
       "measure_cohort", "run_trial", "write_report"]


def test_importing_vctcore_imports_no_torch():
    code = ("import sys, vctcore; heavy = [m for m in ('torch', 'monai', 'numpy', 'pandas') if m in sys.modules];"
            " print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_public_name_resolves_and_is_listed():
    assert sorted(vctcore.__all__) == API
    assert set(API) <= set(dir(vctcore))
    from vctcore.generator import Generator
    from vctcore.measure.cohort import measure_cohort
    from vctcore.phantom.cohort import build_cohort
    from vctcore.population import PopulationSpec
    from vctcore.report import write_report
    from vctcore.synthetic_cohort import generate_cohort
    from vctcore.trial.run import run_trial

    assert vctcore.Generator is Generator and vctcore.PopulationSpec is PopulationSpec
    assert vctcore.build_phantom_cohort is build_cohort and vctcore.generate_cohort is generate_cohort
    assert vctcore.measure_cohort is measure_cohort and vctcore.run_trial is run_trial
    assert vctcore.write_report is write_report
    assert "progress" in inspect.signature(build_cohort).parameters
    for fn in (generate_cohort, measure_cohort, run_trial, write_report):
        assert "progress" in inspect.signature(fn).parameters, fn


def test_measure_is_callable_whichever_was_imported_first():
    """``vctcore.measure`` is the measurement package and, called, its ``measure()``: a package and a
    function cannot share a name, so the package is made callable."""
    code = ("import vctcore.measure.cohort\n"  # the package first: it becomes vctcore's attribute
            "from vctcore import measure\n"
            "from vctcore.measure.api import measure as fn\n"
            "import numpy as np\n"
            "from vctcore.volume import CTVolume\n"
            "ct = CTVolume(data=np.full((4, 4, 4), -1000, np.int16), affine=np.eye(4))\n"
            "try:\n"
            "    measure(ct, backend='threshold')\n"
            "except Exception as err:\n"
            "    a = type(err).__name__ + str(err)\n"
            "try:\n"
            "    fn(ct, backend='threshold')\n"
            "except Exception as err:\n"
            "    b = type(err).__name__ + str(err)\n"
            "print(callable(measure), a == b)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.split() == ["True", "True"], out.stderr[-2000:]


def test_unknown_names_raise_attribute_error():
    try:
        vctcore.no_such_thing  # noqa: B018
    except AttributeError as err:
        assert "no_such_thing" in str(err)
    else:
        raise AssertionError("expected AttributeError")
