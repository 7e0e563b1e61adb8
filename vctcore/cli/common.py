"""Shared pieces of the ``vct`` command line: the user-error type and progress bars."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

DEFAULT_POPULATION = Path(__file__).resolve().parents[2] / "assets" / "populations" / "adult_reference.yaml"


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


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
