"""Where the shipped files are: the one place that finds them.

Shipped files keep the repository's layout under a root that holds ``checkpoints/`` and ``assets/``:

    checkpoints/default/            the default generator (``vct generate``, the app)
    checkpoints/downstream/<name>/  reference models under test
    checkpoints/segmenter/, checkpoints/sex_classifier/   the fidelity suite's checker models
    assets/populations/*.yaml       population specs
    assets/trials/*                 trial configurations (their relative paths point into this layout)
    assets/logo.svg, style.css      the app's look

A file is looked up under these roots, in order, and the first root holding it wins:

1. ``$VCT_ASSETS`` (a directory holding ``checkpoints/`` and/or ``assets/``), when set;
2. the files installed with the package (``vctcore/_shipped/``, put there by ``pip install .``);
3. the source tree (the repository checkout ``vctcore`` was imported from).

The generator used when none is named is ``$VCT_GENERATOR`` (a generator directory) when set, else the
shipped ``checkpoints/default``. Calibrations shipped inside the package (``vctcore/measure/*.json``,
``vctcore/trial/*.json``) are found by :func:`package_file`. Only the standard library is imported here.
"""
from __future__ import annotations

import os
from pathlib import Path

#: environment variable naming a root that holds ``checkpoints/`` and ``assets/``
ASSETS_ENV = "VCT_ASSETS"
#: environment variable naming the generator directory used when none is given
GENERATOR_ENV = "VCT_GENERATOR"
#: the installed package's directory
PACKAGE_DIR = Path(__file__).resolve().parent
#: where ``pip install .`` puts the shipped files (absent in a source checkout)
INSTALLED_ROOT = PACKAGE_DIR / "_shipped"
#: the directory above the package: the repository root when ``vctcore`` is imported from a checkout
SOURCE_ROOT = PACKAGE_DIR.parent


def source_tree() -> Path | None:
    """The repository checkout ``vctcore`` was imported from (it holds ``pyproject.toml`` beside the
    package), or None for an installed package."""
    return SOURCE_ROOT if (SOURCE_ROOT / "pyproject.toml").is_file() else None


def roots() -> list[Path]:
    """The roots searched for shipped files, in lookup order (only those that exist as directories)."""
    candidates: list[Path] = []
    env = os.environ.get(ASSETS_ENV)
    if env:
        candidates.append(Path(env).expanduser())
    candidates.append(INSTALLED_ROOT)
    tree = source_tree()
    if tree is not None:
        candidates.append(tree)
    return [p for p in dict.fromkeys(candidates) if p.is_dir()]


def shipped(relative: str | os.PathLike) -> Path:
    """The shipped file or directory ``relative`` (e.g. ``"checkpoints/default"``) under the first root
    holding it; when no root holds it, the path under the first root (so a message names a real place)."""
    found = roots()
    for root in found:
        if (root / relative).exists():
            return root / relative
    return (found[0] if found else SOURCE_ROOT) / relative


def checkpoint_dirs() -> list[Path]:
    """Every root's ``checkpoints/`` directory that exists, in lookup order."""
    return [r / "checkpoints" for r in roots() if (r / "checkpoints").is_dir()]


def shipped_generator() -> Path:
    """The shipped default generator directory (``checkpoints/default``)."""
    return shipped("checkpoints/default")


def default_generator() -> Path:
    """The generator used when none is named: ``$VCT_GENERATOR`` when set, else :func:`shipped_generator`."""
    env = os.environ.get(GENERATOR_ENV)
    return Path(env).expanduser() if env else shipped_generator()


def downstream_dir() -> Path:
    """The shipped reference models under test (``checkpoints/downstream``), one directory per model."""
    return shipped("checkpoints/downstream")


def segmenter_dir() -> Path:
    """The shipped independent segmenter (``checkpoints/segmenter``)."""
    return shipped("checkpoints/segmenter")


def sex_classifier_dir() -> Path:
    """The shipped image sex classifier (``checkpoints/sex_classifier``)."""
    return shipped("checkpoints/sex_classifier")


def populations_dir() -> Path:
    """The shipped population specs (``assets/populations``)."""
    return shipped("assets/populations")


def population_specs() -> list[Path]:
    """The shipped population spec files (``assets/populations/*.yaml``), sorted by name."""
    return sorted(populations_dir().glob("*.yaml"))


def population_spec(name: str) -> Path:
    """The shipped population spec ``name`` (a file stem of ``assets/populations``, e.g. "adult_reference");
    FileNotFoundError naming the shipped ones when there is none of that name."""
    path = populations_dir() / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(p.stem for p in population_specs()) or "none"
        raise FileNotFoundError(f"no shipped population spec {name!r} (shipped: {known})")
    return path


def default_population() -> Path:
    """The reference population spec the CLI samples by default (``assets/populations/adult_reference.yaml``)."""
    return shipped("assets/populations/adult_reference.yaml")


def trials_dir() -> Path:
    """The shipped trial configurations and their CSV populations (``assets/trials``)."""
    return shipped("assets/trials")


def asset(name: str) -> Path:
    """A file of ``assets/`` by name (e.g. ``"logo.svg"``)."""
    return shipped(f"assets/{name}")


def package_file(relative: str) -> Path:
    """A data file installed inside the package (e.g. ``"measure/height_calibration.json"``)."""
    return PACKAGE_DIR / relative
