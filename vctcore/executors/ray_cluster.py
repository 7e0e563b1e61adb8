"""The Ray executor: one actor per worker slot (a GPU, or a CPU), each running ``setup()`` once.

Tasks go to the actors in batches, at most :data:`IN_FLIGHT` batches queued per actor, so a caller that
stops reading early (a phantom cohort that is full) leaves little work wasted. Results come back as each
batch finishes (``ray.wait``). A worker process that dies is restarted by Ray (``max_restarts``), which
runs ``setup()`` again, and the batches it held are retried (``max_task_retries``); an exception raised by
the task function itself is not retried and reaches the caller as that exception (its type and message, as
a local run raises it; the worker's traceback is in Ray's logs). The callers' task
functions write each patient atomically and skip patients already on disk, so a retried batch remakes
only what is missing and a rerun after the driver died resumes.

Workers and driver must see the same paths (a filesystem shared at the same mount point on every node)
and the same installed vctcore; tasks carry absolute paths.
"""
from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from vctcore.executors.base import Executor, ExecutorError, R, T

#: restarts of one actor (and retries of a batch it held) before the run gives up
RETRIES = 3
#: batches queued per actor (one running, one waiting, so an actor never idles between batches)
IN_FLIGHT = 2
#: the most tasks in one batch
MAX_BATCH = 8


@ray.remote(max_restarts=RETRIES, max_task_retries=RETRIES)
class Worker:
    """One worker slot: ``setup()`` once per (re)start, then ``fn(state, task)`` for each task of a batch."""

    def __init__(self, setup: Callable[[], Any] | None, fn: Callable[[Any, Any], Any]) -> None:
        self.fn = fn
        self.state = setup() if setup is not None else None

    def run(self, batch: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
        return [(index, self.fn(self.state, task)) for index, task in batch]

    def pid(self) -> int:
        import os

        return os.getpid()


def _actor_error(err: RayActorError) -> str:
    """One line for a lost worker: the exception its setup raised (the last line of Ray's message, which
    ends with the worker's traceback), or the first line of why it died."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [""]
    if getattr(err, "actor_init_failed", False):
        return f"a Ray worker failed to set up: {lines[-1]}"
    return f"a Ray worker died {RETRIES + 1} times: {lines[0]}"


def batch_size(n_tasks: int, workers: int) -> int:
    """Tasks per batch: about four batches per worker, at most :data:`MAX_BATCH`."""
    return max(1, min(MAX_BATCH, math.ceil(n_tasks / (4 * max(1, workers)))))


class RayExecutor(Executor):
    """Actors on the Ray cluster at ``address`` (None: a local cluster started here with ``workers`` CPUs,
    or every core for 0, and shut down by :meth:`close`). An already initialised Ray (a notebook, a test)
    is used as it is and left running."""

    kind = "ray"
    distributed = True

    def __init__(self, workers: int = 0, address: str | None = None) -> None:
        super().__init__(workers)
        self.address = address
        self._owns = not ray.is_initialized()
        if self._owns:
            local = {} if address else {"num_cpus": workers or None}
            # workers' own output stays in Ray's session logs (/tmp/ray/session_latest/logs): errors reach the
            # caller as exceptions, and the retries of batches stopped on purpose are not news
            ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
                     **local)
        self.actors: list[Any] = []  # the running map's actors (tests kill one of them)

    def slots(self, gpu: bool) -> tuple[int, bool]:
        """(worker slots of the cluster, whether they are GPUs): GPUs when ``gpu`` and the cluster has
        any, else CPUs."""
        res = ray.cluster_resources()
        gpus = int(res.get("GPU", 0))
        if gpu and gpus:
            return gpus, True
        return max(1, int(res.get("CPU", 1))), False

    def map(self, fn: Callable[[Any, T], R], tasks: Sequence[T], *, setup: Callable[[], Any] | None = None,
            gpu: bool = False, batch: int | None = None) -> Iterator[tuple[int, R]]:
        tasks = list(tasks)
        if not tasks:
            return
        slots, on_gpu = self.slots(gpu)
        n = min(self.workers or slots, slots, len(tasks))  # more actors than slots would wait forever
        size = batch or batch_size(len(tasks), n)
        indexed = list(enumerate(tasks))
        batches = deque(indexed[k:k + size] for k in range(0, len(indexed), size))
        options = {"num_cpus": 1, "num_gpus": 1 if on_gpu else 0}
        self.actors = [Worker.options(**options).remote(setup, fn) for _ in range(n)]
        pending: dict[Any, Any] = {}
        try:
            for actor in self.actors:
                for _ in range(IN_FLIGHT):
                    if batches:
                        pending[actor.run.remote(batches.popleft())] = actor
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                actor = pending.pop(ref)
                try:
                    results = ray.get(ref)
                except RayActorError as err:  # died RETRIES + 1 times, or its setup() raised
                    raise ExecutorError(_actor_error(err)) from None
                except RayTaskError as err:  # the task's own exception, as a local run raises it
                    if isinstance(err.cause, Exception):
                        raise err.cause from None
                    raise
                if batches:
                    pending[actor.run.remote(batches.popleft())] = actor
                yield from results
        finally:
            for ref in pending:  # work queued ahead for a caller that stopped early: not to be retried
                ray.cancel(ref)
            for actor in self.actors:
                ray.kill(actor)
            self.actors = []

    def describe(self) -> dict[str, Any]:
        res = ray.cluster_resources()
        return {"kind": self.kind, "workers": self.workers, "address": self.address or "local cluster",
                "cluster": {k: res[k] for k in ("CPU", "GPU") if k in res}}

    def close(self) -> None:
        if self._owns and ray.is_initialized():
            ray.shutdown()
        self._owns = False
