"""Executors: where the per-patient work of a cohort or a trial runs.

One interface for phantom building, generation, reconstruction and measurement::

    with make_executor(ExecutorSpec("ray", workers=4)) as ex:
        for index, result in ex.map(fn, tasks, setup=loader, gpu=True):
            ...

``map`` calls ``fn(state, task)`` for every task, where ``state = setup()`` is made once per worker (a
loaded generator, say; ``None`` without ``setup``), and yields ``(index, result)`` as tasks finish, in any
order (:func:`in_order` restores the tasks' order). ``fn`` and ``setup`` must be picklable (module-level
functions, :func:`functools.partial` of them, or small classes): worker processes call them. A task's
result must not depend on which worker ran it or when: every per-patient function here draws from the
patient's own seed, so a cohort is the same file for file whatever the executor and worker count.

Kinds (:data:`KINDS`):

* ``local`` (the default): ``workers`` = 1 runs in this process; more runs spawned processes on this machine.
* ``ray``: Ray actors on an existing cluster (``address``) or on a local one started for the run
  (:mod:`vctcore.executors.ray_cluster`); Ray is an optional dependency, imported only here.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")
#: the executor kinds ``--executor`` accepts
KINDS = ("local", "ray")
#: the one-line refusal when the ray executor is asked for without Ray installed
RAY_MISSING = ("--executor ray needs Ray, which is not installed: pip install 'vctcore[ray]' "
               "(or pip install -r requirements-ray.txt)")


class ExecutorError(ValueError):
    """An executor that cannot run here (unknown kind, Ray missing, a worker lost too often)."""


@dataclass(frozen=True)
class ExecutorSpec:
    """What a command or a trial config names: ``kind``, ``workers`` (0: one per core for local, one per
    GPU or CPU slot of the cluster for ray) and, for ray, the cluster ``address`` (None: start a local
    cluster for the run; "auto": the cluster this machine belongs to; "ray://HOST:10001": Ray Client)."""

    kind: str = "local"
    workers: int = 1
    address: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ExecutorError(f"executor must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.workers < 0:
            raise ExecutorError(f"workers must be 0 (every core or slot) or more, got {self.workers}")
        if self.address is not None and self.kind != "ray":
            raise ExecutorError("a Ray address is only for the ray executor (--executor ray)")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "workers": self.workers, **({"address": self.address} if self.address else {})}


class Executor:
    """Runs ``fn(state, task)`` over tasks (see the module docstring). Use as a context manager or call
    :meth:`close`; ``distributed`` is True where workers may be on other machines (they then read and
    write through a filesystem they share with the driver)."""

    kind = "base"
    distributed = False

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def map(self, fn: Callable[[Any, T], R], tasks: Sequence[T], *, setup: Callable[[], Any] | None = None,
            gpu: bool = False, batch: int | None = None) -> Iterator[tuple[int, R]]:
        """Yield ``(index, fn(state, tasks[index]))`` for every task as it finishes. ``gpu``: each worker
        asks for one GPU where the executor has them. ``batch``: tasks sent to a worker at once (None: the
        executor's choice; 1 for a caller that may stop early, so little is made ahead in vain). Closing the
        iterator early stops the workers."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the workers (and a cluster started for this executor)."""

    def describe(self) -> dict[str, Any]:
        """What ran the work, for provenance records."""
        return {"kind": self.kind, "workers": self.workers}

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ray_available() -> bool:
    """True when Ray can be imported."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def check_available(spec: ExecutorSpec) -> None:
    """ExecutorError (:data:`RAY_MISSING`) when ``spec`` asks for Ray and Ray is not installed."""
    if spec.kind == "ray" and not ray_available():
        raise ExecutorError(RAY_MISSING)


def make_executor(spec: ExecutorSpec | None = None) -> Executor:
    """The executor ``spec`` names (default: local, one worker, in this process)."""
    spec = spec or ExecutorSpec()
    if spec.kind == "local":
        from vctcore.executors.local import LocalExecutor

        return LocalExecutor(spec.workers)
    check_available(spec)
    from vctcore.executors.ray_cluster import RayExecutor

    return RayExecutor(spec.workers, spec.address)


def in_order(results: Iterable[tuple[int, R]]) -> Iterator[R]:
    """The results of :meth:`Executor.map` in task order (those that finish early wait here)."""
    waiting: dict[int, R] = {}
    nxt = 0
    for index, result in results:
        waiting[index] = result
        while nxt in waiting:
            yield waiting.pop(nxt)
            nxt += 1
