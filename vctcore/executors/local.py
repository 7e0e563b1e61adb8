"""The local executor: one worker runs in this process; more run in spawned processes on this machine."""
from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from vctcore.executors.base import Executor, R, T

_STATE: Any = None  # the worker process's state (what ``setup`` made)


def _init(setup: Callable[[], Any] | None, threads: int) -> None:
    global _STATE
    if setup is not None:
        import torch

        torch.set_num_threads(threads)  # the machine's cores shared among the workers
        _STATE = setup()


def _call(job: tuple[int, Callable[[Any, Any], Any], Any]) -> tuple[int, Any]:
    index, fn, task = job
    return index, fn(_STATE, task)


class LocalExecutor(Executor):
    """``workers`` = 1: tasks run here, in order, after one ``setup()``; more: a spawned process pool
    (spawned, not forked: the caller may hold threads, torch's or a progress bar's, that fork would copy),
    ``setup()`` once per process, results in the order they finish. 0: one worker per core."""

    kind = "local"

    def __init__(self, workers: int = 1) -> None:
        super().__init__(workers or os.cpu_count() or 1)

    def map(self, fn: Callable[[Any, T], R], tasks: Sequence[T], *, setup: Callable[[], Any] | None = None,
            gpu: bool = False, batch: int | None = None) -> Iterator[tuple[int, R]]:
        tasks = list(tasks)
        if not tasks:
            return
        if self.workers == 1 or len(tasks) == 1:
            state = setup() if setup is not None else None
            for index, task in enumerate(tasks):
                yield index, fn(state, task)
            return
        n = min(self.workers, len(tasks))
        threads = max(1, (os.cpu_count() or 1) // n)
        with mp.get_context("spawn").Pool(n, initializer=_init, initargs=(setup, threads)) as pool:
            yield from pool.imap_unordered(_call, [(i, fn, task) for i, task in enumerate(tasks)], chunksize=1)
