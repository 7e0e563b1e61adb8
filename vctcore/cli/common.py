"""Shared pieces of the ``vct`` command line: the user-error type and progress bars."""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from vctcore.assets import default_population
from vctcore.progress import Progress

if TYPE_CHECKING:
    from vctcore.executors import ExecutorSpec

DEFAULT_POPULATION = default_population()


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


def progress_file(stage: str, every_s: float = 0.5) -> Progress:
    """A progress reporter ``(done, total, label)`` that writes the stage's state as JSON to the file named
    by ``$VCT_PROGRESS_FILE`` (set by :mod:`vctcore.jobs` for background jobs; a no-op without it) at most
    every ``every_s`` seconds and at the stage's end: stage, done, total, label, started (epoch s, first
    report), start_done (done at the first report: items found cached), updated."""
    import json
    import os

    target = os.environ.get("VCT_PROGRESS_FILE")
    state: dict = {"started": None, "start_done": 0, "last": 0.0}

    def report(done: int, total: int, label: str = "") -> None:
        if not target:
            return
        now = time.time()
        if state["started"] is None:
            state["started"], state["start_done"] = now, done
        if done < total and now - state["last"] < every_s:
            return
        state["last"] = now
        from vctcore.cohort import _atomic_text

        _atomic_text(Path(target), json.dumps({"stage": stage, "done": done, "total": total, "label": label,
                                              "started": state["started"], "start_done": state["start_done"],
                                              "updated": now}))

    return report


def progress_bar(total: int, desc: str, unit: str, quiet: bool) -> tuple[Progress, Callable[[], None]]:
    """A tqdm bar on stderr; returns (update(done, total, label=''), close())."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=quiet)
    report = progress_file(desc)

    def update(done: int, total_now: int, label: str = "") -> None:
        bar.total = total_now
        bar.n = done
        if label:
            bar.set_postfix_str(label, refresh=False)
        bar.refresh()
        report(done, total_now, label)

    return update, bar.close


@contextmanager
def progress_run(total: int, desc: str, unit: str, quiet: bool, errors: tuple[type[Exception], ...], *,
                 context: str = "") -> Iterator[Progress]:
    """A :func:`progress_bar` for the ``with`` block, yielding its ``update`` and closed on leaving; ``errors``
    raised inside become one-line CLIErrors (their message, after ``context`` when given)."""
    update, close = progress_bar(total, desc, unit, quiet)
    try:
        yield update
    except errors as err:
        raise CLIError(f"{context}{err}") from None
    finally:
        close()


def add_executor_args(p: argparse.ArgumentParser, workers_default: int | None = 1, workers_help: str = "") -> None:
    """``--executor local|ray``, ``--ray-address ADDR`` and ``--workers N`` on a subcommand's parser."""
    p.add_argument("--executor", choices=("local", "ray"), default=None,
                   help="where the patients are made: local processes (default) or a Ray cluster (docs/ray.md)")
    p.add_argument("--ray-address", default=None,
                   help="the Ray cluster to join (auto, HOST:PORT or ray://HOST:10001); default: a local cluster "
                        "started for the run")
    p.add_argument("--workers", type=int, default=workers_default,
                   help=workers_help or "worker processes (local) or actors (ray); 0: one per core, or per GPU "
                                        "or CPU slot of the Ray cluster; the result is the same for any number")


def executor_spec(args: argparse.Namespace, default_kind: str = "local", default_workers: int = 1) -> ExecutorSpec:
    """The :class:`vctcore.executors.ExecutorSpec` of ``--executor``/``--ray-address``/``--workers``
    (``--ray-address`` alone means ray); CLIError (one line) for a bad combination or when Ray is asked
    for and not installed. Checked before any heavy import, so the refusal comes at once."""
    from vctcore.executors import ExecutorError, ExecutorSpec, check_available

    kind = args.executor or ("ray" if args.ray_address else default_kind)
    workers = default_workers if args.workers is None else args.workers
    if workers < 0:
        raise CLIError(f"--workers must be 0 (every core) or more, got {workers}")
    try:
        spec = ExecutorSpec(kind, workers, args.ray_address)
        check_available(spec)
    except ExecutorError as err:
        raise CLIError(str(err)) from None
    return spec
