"""Shared pieces of the ``vct`` command line: the user-error type and progress bars."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

DEFAULT_POPULATION = Path(__file__).resolve().parents[2] / "assets" / "populations" / "adult_reference.yaml"


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


def load_population(path: str | Path):
    """The PopulationSpec at ``path``; CLIError naming the file when it is missing or invalid."""
    from vctcore.population import PopulationSpec

    spec_path = Path(path)
    if not spec_path.exists():
        raise CLIError(f"population spec {spec_path} does not exist")
    try:
        return PopulationSpec.from_yaml(spec_path)
    except ValueError as err:
        raise CLIError(f"population spec {spec_path}: {err}") from None


def loss_printer(quiet: bool, every_s: float) -> Callable[[str, int, int, dict], None]:
    """A training progress callback ``(stage, done, total, losses)`` that prints one stderr line at most
    every ``every_s`` seconds (and at each stage's end): elapsed time, stage, step and losses."""
    start = time.monotonic()
    last = {"t": 0.0}

    def progress(stage: str, done: int, total: int, losses: dict) -> None:
        now = time.monotonic()
        if quiet or (done < total and now - last["t"] < every_s):
            return
        last["t"] = now
        parts = " ".join(f"{k}={v:.4g}" for k, v in losses.items())
        print(f"[{now - start:7.0f}s] {stage} {done:>6}/{total:<6} {parts}", file=sys.stderr, flush=True)

    return progress


def progress_bar(total: int, desc: str, unit: str, quiet: bool) -> tuple[Callable[..., None], Callable[[], None]]:
    """A tqdm bar on stderr; returns (update(done, total, label=''), close())."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=quiet)

    def update(done: int, total_now: int, label: str = "") -> None:
        bar.total = total_now
        bar.n = done
        if label:
            bar.set_postfix_str(label)
        bar.refresh()

    return update, bar.close
