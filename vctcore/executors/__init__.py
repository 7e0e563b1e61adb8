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

from collections.abc import Iterable, Iterator

from vctcore.executors.base import (KINDS, RAY_MISSING, Executor, ExecutorError, ExecutorSpec, R,  # noqa: F401
                                    T)


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
