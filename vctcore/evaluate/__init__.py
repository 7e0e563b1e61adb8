"""Generator fidelity suite (``vct evaluate-generator``): the paper's sections 1.3-1.4 as numbers.

One job per module: ``overlap`` (Dice), ``anatomy`` (organ volumes and centroids, correlations),
``measures`` (attributes measured from an image + merged segmentation), ``conditioning`` (Z-scores
per conditioning bin, MAE), ``sex`` (automatic sex call), ``recon`` (autoencoder PSNR/SSIM),
``realism`` (Fréchet distance of slice features), ``segmenter`` / ``segmenter_train`` (the
independent 3D U-Net), ``patient`` (per-patient records), ``metrics`` (cohort figures and targets),
``suite`` (the run), ``plots`` (figures). Nothing here imports streamlit.
"""
from __future__ import annotations

from vctcore.evaluate.suite import EvaluationError, evaluate_generator, load_report

__all__ = ["EvaluationError", "evaluate_generator", "load_report"]
