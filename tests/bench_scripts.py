"""The ``main`` of a script in bench/ (they are scripts, not a package), for tests that run them.

Importing this module puts ``bench/`` at the end of ``sys.path``, as running ``python bench/NAME.py``
puts it first, so the scripts and the tests import the research diagnostics as ``diagnostics.NAME``.
"""
from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"
if str(BENCH_DIR) not in sys.path:
    sys.path.append(str(BENCH_DIR))


def bench_module(name: str) -> ModuleType:
    """``bench/<name>.py`` loaded as a module."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH_DIR / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def bench_main(name: str) -> Callable[[list[str] | None], dict]:
    """``bench/<name>.py``'s ``main(argv) -> dict``."""
    return bench_module(name).main
