"""Real DICOM test series and edited copies of it (shared by the DICOM tests).

``SERIES``: TotalSegmentator's example CT series (20 axial slices, 512 x 512, JPEG 2000 lossless,
Siemens, RescaleIntercept -1024; see tests/data/README.md). Edited copies are written with pydicom.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pydicom

DATA = Path(__file__).parent / "data"
SERIES = DATA / "ts_example_ct_dicom"
FILES = sorted(SERIES.iterdir())


def copy_series(dst: Path, *, edit: Callable[[int, pydicom.Dataset], None] | None = None, skip: tuple[int, ...] = (),
                rename: Callable[[int, str], str] | None = None) -> Path:
    """A copy of the series in ``dst``: files ``skip`` (indices in name order) left out, ``edit(i, ds)``
    applied to each dataset (then saved with pydicom), names changed by ``rename(i, name)``."""
    dst.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(FILES):
        if i in skip:
            continue
        target = dst / (rename(i, src.name) if rename else src.name)
        if edit is None:
            shutil.copyfile(src, target)
        else:
            ds = pydicom.dcmread(src)
            edit(i, ds)
            ds.save_as(target)
    return dst
