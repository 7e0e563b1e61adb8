"""The one progress callback type of vctcore's long jobs.

    progress(done: int, total: int, message: str) -> None

``done`` of ``total`` items (patients, pages, images) are finished; ``message`` names the last item or
what is happening ("" when there is nothing to say). vctcore always passes all three arguments, so a
callback may give ``message`` a default or not. A job of several stages (a trial) counts each stage from 0
and starts its messages with the stage's name and ": " (:func:`staged`; :func:`split_stage` takes them apart).
Training loops report losses instead and keep their own ``(stage, done, total, losses)`` callback
(:mod:`vctcore.train.loop`).
"""
from __future__ import annotations

from collections.abc import Callable

#: ``progress(done, total, message)``: see the module docstring
Progress = Callable[[int, int, str], None]
#: what separates a stage's name from the rest of a message
STAGE_SEP = ": "


def staged(progress: Progress, stage: str) -> Progress:
    """``progress`` with every message prefixed by ``stage`` (``"stage: message"``, or ``"stage"`` alone)."""

    def report(done: int, total: int, message: str = "") -> None:
        progress(done, total, f"{stage}{STAGE_SEP}{message}" if message else stage)

    return report


def split_stage(message: str) -> tuple[str, str]:
    """``(stage, rest)`` of a message made by :func:`staged`: the text before the first ``": "`` and the
    text after it (``rest`` is "" for a bare stage name)."""
    stage, _, rest = message.partition(STAGE_SEP)
    return stage, rest
