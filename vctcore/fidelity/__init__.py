"""Generator fidelity suite (``vct evaluate-generator``): the paper's sections 1.3-1.4 as numbers.

One job per module: ``anatomy`` (organ volumes and centroids, correlations), ``ceiling`` (the
correlation the attributes alone can explain), ``measures`` (attributes measured from an image + merged
segmentation), ``conditioning`` (Z-scores per conditioning bin, MAE), ``sex`` (prostate/pelvis sex
call), ``recon`` (autoencoder PSNR/SSIM, encode + decode), ``realism`` (Fréchet distance of slice
features), ``patient`` (per-patient records), ``metrics`` (cohort figures and
targets), ``suite`` (the run), ``plots`` (figures), ``summary`` (a saved report's tables and model-card
figures). Dice is :mod:`vctcore.overlap`; the checker models it runs (independent
segmenter, sex classifier) are in :mod:`vctcore.checkers`. Nothing here imports streamlit.
"""
from __future__ import annotations

from typing import Any

__all__ = ["EvaluationError", "evaluate_generator", "load_report"]


def __getattr__(name: str) -> Any:
    """The suite's entry points, imported on first use: importing one module of this package (e.g. the
    Dice) must not import the whole suite (torch, MONAI, scikit-learn; seconds per CLI call)."""
    if name in __all__:
        from vctcore.fidelity import suite

        return getattr(suite, name)
    raise AttributeError(f"module 'vctcore.fidelity' has no attribute {name!r}")
