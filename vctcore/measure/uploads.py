"""Measure a CT that arrives as uploaded files (the app's "Measure a CT" page), with one call.

The files are one NIfTI file, one zip of a DICOM series, or the files of one DICOM series
(:func:`vctcore.ct_input.read_ct_upload`); a segmentation, if any, is one NIfTI label map on the CT's
grid. Every refusal is a ValueError with one line naming the upload and the reason.
"""
from __future__ import annotations

from collections.abc import Sequence

from vctcore.ct_input import read_ct_upload, read_labels_upload
from vctcore.measure.api import measure
from vctcore.measure.record import MeasureError, Measurements
from vctcore.volume import CTVolume


def measure_upload(files: Sequence[tuple[str, bytes]], *, seg: tuple[str, bytes] | None = None,
                   force: bool = False) -> tuple[CTVolume, Measurements]:
    """Read the uploaded CT (and segmentation) and measure it: the CT (HU, (X, Y, Z) RAS+) and its
    :class:`Measurements` (backend "labels" with a segmentation, else "threshold"). ``force``: see
    :func:`vctcore.measure.measure`."""
    ct = read_ct_upload(files)
    labels = read_labels_upload(*seg, like=ct) if seg is not None else None
    where = files[0][0] if len(files) == 1 else f"the {len(files)} uploaded files"
    try:
        return ct, measure(ct, labels, force=force)
    except MeasureError as err:
        raise MeasureError(str(err).replace("CT: ", f"{where}: ", 1) if str(err).startswith("CT: ")
                           else f"{where}: {err}") from None


__all__ = ["measure_upload"]
