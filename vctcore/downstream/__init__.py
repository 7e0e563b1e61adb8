"""Downstream models: the models under test of a virtual clinical trial.

``card``: model cards (what a model predicts, reads and was trained on), checked on load.
``preprocess``: a CT -> coronal/sagittal body-middle slices, the models' inputs.
``reference``: the reference 2.5D regressor (shared MONAI ResNet over both planes, linear head).
``train``: ``train_reference`` (the paper's recipe, sized for a CPU).
``models``: ``load_model(dir)`` -> DownstreamModel (vct-reference, ONNX, TorchScript adapters) and
``predict_cohort``. ``export``: ``export_onnx`` / ``export_torchscript``.

The names below are imported from their modules on first use, so ``import vctcore.downstream`` stays
light (torch and MONAI load with the modules that need them).
"""
from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "DownstreamError": "card", "ModelCard": "card", "InputSpec": "card", "Preprocessing": "card",
    "load_card": "card", "write_card": "card",
    "DEFAULT_PREPROCESSING": "preprocess", "body_frame": "preprocess", "model_inputs": "preprocess",
    "plane_images": "preprocess",
    "ReferenceConfig": "reference", "ReferenceRegressor": "reference",
    "train_reference": "train",
    "DownstreamModel": "models", "load_model": "models", "predict_cohort": "models",
    "export_onnx": "export", "export_torchscript": "export",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"vctcore.downstream.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'vctcore.downstream' has no attribute {name!r}")
