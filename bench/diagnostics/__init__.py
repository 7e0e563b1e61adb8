"""Generator-research diagnostics that only the bench scripts run: how far apart a VQ codebook's used
codes lie (``codebook``), a diffusion's held-out denoising loss per timestep against the Bayes bound of
a code-frequency denoiser (``denoising``), a segmentation autoencoder's reconstruction Dice
(``seg_recon``) and a training run's networks before export (``run_modules``).

Not part of the installed package: a bench script (``python bench/NAME.py``) has ``bench/`` on its
path and imports ``diagnostics.codebook``; tests reach them through ``tests/bench_scripts.py``.
"""
