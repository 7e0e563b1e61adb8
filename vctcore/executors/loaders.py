"""What an executor's worker loads once and keeps: a generator (``setup`` of :meth:`Executor.map`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


class GeneratorLoader:
    """``setup`` that loads the generator at ``path`` on ``device`` ("auto": CUDA where the worker has a GPU).

    ``generator``, when given, is an already loaded one that a worker in this process uses as it is; it is
    not pickled, so a worker in another process or on another machine loads its own copy (once)."""

    def __init__(self, path: str | Path, device: str = "auto", generator: Any = None) -> None:
        self.path, self.device, self.generator = str(Path(path).resolve()), device, generator

    def __call__(self) -> Any:
        if self.generator is not None:
            return self.generator
        from vctcore.generator import Generator

        return Generator.from_pretrained(self.path, device=self.device)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "device": self.device, "generator": None}
