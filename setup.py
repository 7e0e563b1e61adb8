"""Packaging beyond pyproject.toml: a wheel carries the shipped checkpoints and assets.

They stay at the repository's top level (``checkpoints/``, ``assets/``); a non-editable build copies them,
layout unchanged, into ``vctcore/_shipped/`` of the wheel, where :mod:`vctcore.assets` finds them. An
editable install reads them from the checkout instead, so nothing is copied there.
"""
from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
#: what a wheel ships, relative to the repository root
SHIPPED = ("assets", "checkpoints/default", "checkpoints/downstream", "checkpoints/segmenter",
           "checkpoints/sex_classifier")


class BuildWithShipped(build_py):
    """``build_py`` that also copies :data:`SHIPPED` into ``vctcore/_shipped/`` of the build."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for rel in SHIPPED:
            src = HERE / rel
            if src.is_dir():
                self.copy_tree(str(src), str(Path(self.build_lib) / "vctcore" / "_shipped" / rel))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = list(super().get_outputs(include_bytecode))
        if getattr(self, "editable_mode", False):
            return outputs
        for rel in SHIPPED:
            src = HERE / rel
            outputs += [str(Path(self.build_lib) / "vctcore" / "_shipped" / f.relative_to(HERE))
                        for f in sorted(src.rglob("*")) if f.is_file()]
        return outputs


setup(cmdclass={"build_py": BuildWithShipped})
