"""Export a reference downstream model to ONNX (or TorchScript) as a model directory of its own.

``export_onnx(model_dir, out_dir)`` writes ``out_dir/model.onnx`` (inputs named as the card's inputs,
``coronal`` and ``sagittal``, each float32 ``[batch, 1, H, W]`` with a free batch axis; one output
``y_pred`` ``[batch]`` in the target's unit) and ``out_dir/card.yaml`` (the source card with format
``onnx``, weights ``model.onnx`` and its sha256). ``out_dir`` is then loadable with
:func:`vctcore.downstream.models.load_model`, and the export is checked against the torch model on
random inputs before it is kept. The graph is written unoptimised (torch's ONNX optimiser doubles the
export time); onnxruntime folds constants and fuses operators when it loads the file.
``export_torchscript`` does the same with a traced ``torch.jit`` archive, ``model.torchscript``.
"""
from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from vctcore.downstream.card import DownstreamError, load_card, with_weights, write_card
from vctcore.downstream.models import ReferenceModel, load_model

ONNX_NAME = "model.onnx"
TORCHSCRIPT_NAME = "model.torchscript"
OUTPUT_NAME = "y_pred"
#: largest |torch - exported| difference accepted when an export is checked (target unit)
EXPORT_ATOL = 1e-3


def _reference(model_dir: Path) -> ReferenceModel:
    card = load_card(model_dir, verify_weights=False)
    if card.format != "vct-reference":
        raise DownstreamError(f"{model_dir}: only vct-reference models can be exported, this one is {card.format}")
    model = load_model(model_dir)
    assert isinstance(model, ReferenceModel)
    return model


def _out_dir(source: Path, out_dir: str | os.PathLike) -> Path:
    out = Path(out_dir)
    if out.suffix == ".onnx" or out.is_file():
        raise DownstreamError(f"{out}: the export goes to a directory (it gets {ONNX_NAME} and card.yaml), "
                              "not a file name")
    if out.resolve() == source.resolve():
        raise DownstreamError(f"{out}: export into another directory than the source model's")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _examples(model: ReferenceModel, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.rand((batch, *s.shape), generator=gen) for s in model.card.inputs)


def _finish(model: ReferenceModel, out: Path, weights_name: str, fmt: str, what: str) -> Path:
    """Write the card of an exported file, then load the directory and compare it with the torch model."""
    card = with_weights(model.card, out, weights_name, format=fmt,
                        description=f"{what} export of {model.card.name} (vct-reference weights sha256 "
                                    f"{model.card.weights_sha256}). {model.card.description or ''}".strip())
    write_card(card, out)
    exported = load_model(out)
    inputs = {s.name: x.numpy() for s, x in zip(model.card.inputs, _examples(model, 3, seed=1))}
    diff = float(np.max(np.abs(exported.predict_inputs(inputs) - model.predict_inputs(inputs))))
    if not diff <= EXPORT_ATOL:
        raise DownstreamError(f"{out / weights_name}: the export differs from the torch model by {diff:.3g} "
                              f"(more than {EXPORT_ATOL:g})")
    return out


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """torch.onnx's exporter (and the tracer) without log lines ("torchvision is not installed") and warnings."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_onnx(model_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Export the reference model in ``model_dir`` to ``out_dir/model.onnx`` + ``out_dir/card.yaml``; returns
    ``out_dir``. DownstreamError when the source is not a reference model, ``out_dir`` is a file name, or
    the export does not reproduce the torch model's predictions."""
    source = Path(model_dir)
    model = _reference(source)
    out = _out_dir(source, out_dir)
    names = [s.name for s in model.card.inputs]
    batch = torch.export.Dim("batch", min=1)
    tmp = out / f".{ONNX_NAME}.{os.getpid()}.tmp"
    try:
        with _quiet_exporter():
            torch.onnx.export(model.net, _examples(model, 2), str(tmp), input_names=names,
                              output_names=[OUTPUT_NAME], dynamic_shapes={n: {0: batch} for n in names}, dynamo=True,
                              external_data=False, optimize=False, verbose=False)
        os.replace(tmp, out / ONNX_NAME)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return _finish(model, out, ONNX_NAME, "onnx", "ONNX")


def export_torchscript(model_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Export the reference model in ``model_dir`` as a traced TorchScript archive ``out_dir/model.torchscript``
    + ``out_dir/card.yaml``; returns ``out_dir``."""
    source = Path(model_dir)
    model = _reference(source)
    out = _out_dir(source, out_dir)
    with torch.no_grad(), _quiet_exporter():  # group norm's batch-size check warns while tracing
        traced = torch.jit.trace(model.net, _examples(model, 2), check_trace=False)
    tmp = out / f".{TORCHSCRIPT_NAME}.{os.getpid()}.tmp"
    try:
        torch.jit.save(traced, str(tmp))
        os.replace(tmp, out / TORCHSCRIPT_NAME)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return _finish(model, out, TORCHSCRIPT_NAME, "torchscript", "TorchScript")


__all__ = ["ONNX_NAME", "TORCHSCRIPT_NAME", "export_onnx", "export_torchscript"]
