"""Checker models: networks trained apart from the generator that the fidelity suite
(:mod:`vctcore.fidelity`) and the trial's ground truth use to judge generated images.

``segmenter`` (the independent MONAI 3D U-Net, image -> background + 16 merged classes; its 6 mm
refiner cascade), ``segmenter_train`` (``vct train-segmenter``), ``segmenter_refine``
(``vct train-segmenter-refiner``), ``sex_classifier`` (image -> sex, ``vct train-sex-classifier``).
Each is shipped under ``checkpoints/`` with its held-out score. Nothing here imports streamlit.
"""
