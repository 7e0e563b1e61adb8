"""Stage bookkeeping of a running trial: wall time per stage, progress callbacks, ``progress.json``.

The trial reports through one :data:`vctcore.progress.Progress` callback, ``progress(done, total, message)``,
each stage counted from 0 and its messages starting with "<stage>: " (:func:`vctcore.progress.staged`; the
CLI draws one bar per stage from it), and mirrors the running stage to ``progress.json`` (stage, done, total,
label; the app's job view reads it).
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vctcore.cohort import _atomic_text
from vctcore.progress import Progress, staged
from vctcore.provenance import utc_now
PROGRESS_JSON = "progress.json"


class Stages:
    """Times the stages of one trial run into ``seconds`` and mirrors the running stage to ``out``."""

    def __init__(self, out: Path, progress: Progress | None = None) -> None:
        self.out, self._progress = out, progress
        self.seconds: dict[str, float] = {}
        self.current = ""

    def _write(self, stage: str, done: int, total: int, label: str) -> None:
        _atomic_text(self.out / PROGRESS_JSON, json.dumps({
            "stage": stage, "done": done, "total": total, "label": label,
            "updated_utc": utc_now(),
            "seconds": {k: round(v, 1) for k, v in self.seconds.items()}}))

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage (times of a stage entered twice add up)."""
        self.current = name
        self._write(name, 0, 0, "")
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def callback(self, name: str | None = None) -> Progress:
        """A ``(done, total, label)`` callback reporting under ``name`` (default: the running stage)."""
        last = {"t": 0.0}

        def report(done: int, total: int, label: str = "") -> None:
            stage = name or self.current
            if self._progress is not None:
                staged(self._progress, stage)(done, total, label)
            now = time.monotonic()
            if now - last["t"] > 1.0 or done >= total:
                last["t"] = now
                self._write(stage, done, total, label)

        return report
