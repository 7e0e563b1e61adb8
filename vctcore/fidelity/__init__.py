"""Generator fidelity suite (``vct evaluate-generator``): the paper's sections 1.3-1.4 as numbers.

One job per module: ``overlap`` (Dice), ``anatomy`` (organ volumes and centroids, correlations),
``measures`` (attributes measured from an image + merged segmentation), ``conditioning`` (Z-scores
per conditioning bin, MAE), ``sex`` (automatic sex call), ``recon`` (autoencoder PSNR/SSIM),
``realism`` (Fréchet distance of slice features), ``segmenter`` / ``segmenter_train`` (the
independent 3D U-Net), ``patient`` (per-patient records), ``metrics`` (cohort figures and targets),
``suite`` (the run), ``plots`` (figures). Nothing here imports streamlit.
"""
from __future__ import annotations

from typing import Any

__all__ = ["EvaluationError", "evaluate_generator", "load_report"]


def __getattr__(name: str) -> Any:
    """The suite's entry points, imported on first use: importing one module of this package (e.g. the
    segmenter) must not import the whole suite (torch, MONAI, scikit-learn; seconds per CLI call)."""
    if name in __all__:
        from vctcore.evaluate import suite

        return getattr(suite, name)
    raise AttributeError(f"module 'vctcore.evaluate' has no attribute {name!r}")
