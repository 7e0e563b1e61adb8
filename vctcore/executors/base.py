"""The executor interface (:class:`Executor`), what a command names (:class:`ExecutorSpec`) and the
executors' one error type; the package docstring of :mod:`vctcore.executors` gives the contract."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
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
