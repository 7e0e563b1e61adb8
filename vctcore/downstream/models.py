"""One interface for every downstream model under test: ``load_model(dir)`` -> :class:`DownstreamModel`.

A model directory holds a card (:mod:`vctcore.downstream.card`) and one weights file in the card's
``format``:

* ``vct-reference``: safetensors weights of :class:`vctcore.downstream.reference.ReferenceRegressor`,
  whose architecture the card's ``backbone`` gives.
* ``onnx``: an ONNX graph run by onnxruntime on the CPU (``CPUExecutionProvider``); the first-class
  exchange format for models trained elsewhere.
* ``torchscript``: a ``torch.jit.save`` archive loaded with ``torch.jit.load``.

Nothing is unpickled. safetensors holds tensors only; an ONNX file is a protobuf graph of standard
operators; a TorchScript archive is a zip of TorchScript code and tensors that ``torch.jit.load`` reads
with TorchScript's own restricted loader, which builds no arbitrary Python objects. Running a TorchScript
or ONNX model does execute its graph: TorchScript code (torch operators only, no Python imports) or ONNX
operators, written by the model's author, so load models from sources you trust.

Every load checks: the card's fields and the weights' sha256, that the file is what it claims, that the
model's input names (and fixed sizes) agree with the card, and a dry run on blank inputs (zeros of the
card's shapes, a batch of two where the batch axis is free) that must give one finite value per sample.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import torch

from vctcore.downstream.card import DownstreamError, ModelCard, card_path, read_card_file, verify_weights_file
from vctcore.downstream.preprocess import model_inputs
from vctcore.downstream.reference import INPUT_NAMES, ReferenceRegressor, config_from_card
from vctcore.progress import Progress
from vctcore.volume import CTVolume, read_ct

_T = TypeVar("_T")

#: samples per model call in predict_batch
CHUNK = 16
ERR_NOT_ONNX = "{name} is not an ONNX model ({detail})"
ERR_NOT_TORCHSCRIPT = "{name} is not a TorchScript archive ({detail})"
ERR_INPUT_NAMES = "{where}: the model's inputs are {model}, the card's inputs are {card}"
ERR_INPUT_SHAPE = "{where}: input {name!r} has shape {model} in the model, the card says [batch, {card}]"
ERR_OUTPUT = "{where}: the model must give one value per sample; {detail}"
ERR_DRY_RUN = "{where}: dry run on blank inputs failed ({detail})"


class DownstreamModel(ABC):
    """A loaded model under test: ``card``, ``predict(ct)`` and ``predict_batch(cts)`` in the card's unit."""

    def __init__(self, card: ModelCard, model_dir: Path) -> None:
        self.card, self.model_dir = card, model_dir

    @abstractmethod
    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Raw model call: inputs by name, float32 (N, 1, H, W) -> its output array."""

    def predict_inputs(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """(N,) float64 predictions from preprocessed inputs, by input name, each float32 (N, 1, H, W)."""
        n = len(next(iter(inputs.values())))
        out = np.asarray(self._run({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()}))
        return out.reshape(n).astype(np.float64)

    def predict(self, ct: CTVolume) -> float:
        """The prediction for one CT (HU, (X, Y, Z) RAS+), in the card's unit."""
        return float(self.predict_batch([ct])[0])

    def predict_batch(self, cts: Sequence[CTVolume]) -> np.ndarray:
        """(N,) predictions for ``cts``, in the card's unit; inputs are prepared by the card's preprocessing."""
        preds = []
        for i in range(0, len(cts), CHUNK):
            per_ct = [model_inputs(ct, self.card) for ct in cts[i:i + CHUNK]]
            preds.append(self.predict_inputs({s.name: np.stack([p[s.name] for p in per_ct]) for s in self.card.inputs}))
        return np.concatenate(preds) if preds else np.zeros(0)

    def _dry_run(self, batch: int, where: str) -> None:
        blank = {s.name: np.zeros((batch, *s.shape), dtype=np.float32) for s in self.card.inputs}
        try:
            out = np.asarray(self._run(blank))
        except DownstreamError:
            raise
        except Exception as err:  # onnxruntime, TorchScript and torch raise many types
            raise DownstreamError(ERR_DRY_RUN.format(where=where, detail=_first_line(err))) from None
        if out.shape not in ((batch,), (batch, 1)):
            raise DownstreamError(ERR_OUTPUT.format(where=where, detail=f"a batch of {batch} gave shape "
                                                    f"{list(out.shape)}, expected [{batch}] or [{batch}, 1]"))
        if not np.isfinite(out).all():
            raise DownstreamError(ERR_DRY_RUN.format(where=where, detail=f"non-finite output {out.ravel().tolist()}"))


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300] if text else ''}"


class ReferenceModel(DownstreamModel):
    """The vct reference architecture from safetensors weights (see :mod:`vctcore.downstream.reference`)."""

    def __init__(self, card: ModelCard, model_dir: Path, weights: Path) -> None:
        super().__init__(card, model_dir)
        from vctcore.models.checkpoint import CheckpointError, load_module

        where = str(weights)
        names = tuple(s.name for s in card.inputs)
        planes = tuple(s.plane for s in card.inputs)
        if names != INPUT_NAMES or planes != INPUT_NAMES:
            raise DownstreamError(ERR_INPUT_NAMES.format(where=where, model=list(INPUT_NAMES), card=list(names))
                                  + " (vct-reference inputs: coronal, sagittal, in this order and on these planes)")
        try:
            self.net = ReferenceRegressor(config_from_card(card.backbone))
            load_module(self.net, weights, kind="downstream-reference")
        except (ValueError, CheckpointError) as err:
            raise DownstreamError(f"{where}: {err}") from None
        self.net.eval()
        self._dry_run(2, where)

    @torch.no_grad()
    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.net(*(torch.from_numpy(inputs[n]) for n in INPUT_NAMES)).numpy()


class OnnxModel(DownstreamModel):
    """An ONNX model run by onnxruntime on the CPU."""

    def __init__(self, card: ModelCard, model_dir: Path, weights: Path) -> None:
        super().__init__(card, model_dir)
        import onnx
        import onnxruntime as ort

        where = str(weights)

        def check(path: str) -> None:  # raises DecodeError, ValidationError, ...
            onnx.checker.check_model(onnx.load(path, load_external_data=False))

        # a serialised ModelProto starts with field 1 (ir_version, varint): tag byte 0x08
        _load_checked(weights, ERR_NOT_ONNX, 16, b"\x08", "starts with {head!r}", check)
        try:
            self.session = ort.InferenceSession(str(weights), providers=["CPUExecutionProvider"])
        except Exception as err:
            raise DownstreamError(f"{where}: onnxruntime cannot load it ({_first_line(err)})") from None
        self._check_io(where)
        batch = self.session.get_inputs()[0].shape[0]
        self.fixed_batch = batch if isinstance(batch, int) and batch > 0 else None
        self._dry_run(self.fixed_batch or 2, where)

    def _check_io(self, where: str) -> None:
        model_inputs_ = {i.name: i for i in self.session.get_inputs()}
        card = {s.name: s for s in self.card.inputs}
        if set(model_inputs_) != set(card):
            raise DownstreamError(ERR_INPUT_NAMES.format(where=where, model=sorted(model_inputs_), card=sorted(card)))
        for name, spec in card.items():
            info = model_inputs_[name]
            shape = list(info.shape)
            fixed_ok = len(shape) == 4 and all(not isinstance(m, int) or m == c for m, c in zip(shape[1:], spec.shape))
            if not fixed_ok or (isinstance(shape[0], int) and shape[0] < 1):
                raise DownstreamError(ERR_INPUT_SHAPE.format(where=where, name=name, model=shape,
                                                             card=", ".join(map(str, spec.shape))))
            if info.type != "tensor(float)":
                raise DownstreamError(f"{where}: input {name!r} is {info.type}, expected tensor(float) (float32)")
        outputs = self.session.get_outputs()
        if len(outputs) != 1:
            raise DownstreamError(ERR_OUTPUT.format(where=where, detail=f"it has {len(outputs)} outputs "
                                                    f"({', '.join(o.name for o in outputs)})"))
        if outputs[0].shape is None:  # rank unknown: the dry run decides
            return
        shape = list(outputs[0].shape)
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] not in (1, None) and isinstance(shape[1], int)):
            raise DownstreamError(ERR_OUTPUT.format(where=where, detail=f"its output has shape {shape}, expected "
                                                    "[batch] or [batch, 1]"))

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(inputs.values())))
        if self.fixed_batch is None or n == self.fixed_batch:
            return np.asarray(self.session.run(None, inputs)[0]).reshape(n, -1)[:, 0]
        b = self.fixed_batch
        parts = []
        for i in range(0, n, b):
            chunk = {k: v[i:i + b] for k, v in inputs.items()}
            m = len(next(iter(chunk.values())))
            chunk = {k: np.concatenate([v, np.zeros((b - m, *v.shape[1:]), v.dtype)]) for k, v in chunk.items()}
            parts.append(np.asarray(self.session.run(None, chunk)[0]).reshape(b, -1)[:m, 0])
        return np.concatenate(parts)


def _load_checked(weights: Path, template: str, head_size: int, magic: bytes, mismatch: str,
                  load: Callable[[str], _T]) -> _T:
    """``load(str(weights))`` once the file's first ``head_size`` bytes start with ``magic``. Either failing raises
    ``template``'s DownstreamError: ``mismatch`` (formatted with ``head``, its first 8 bytes) and what the file
    looks like, or the loader's first error line."""
    with open(weights, "rb") as fh:
        head = fh.read(head_size)
    if not head.startswith(magic):
        detail = f"{weights} {mismatch.format(head=head[:8])}, {_looks_like(head)}"
        raise DownstreamError(template.format(name=weights.name, detail=detail))
    try:
        return load(str(weights))
    except Exception as err:
        raise DownstreamError(template.format(name=weights.name, detail=f"{weights}: {_first_line(err)}")) from None


def _looks_like(head: bytes) -> str:
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (a TorchScript or PyTorch file? set format: torchscript)"
    if head.startswith(b"\x80"):
        return "a Python pickle (refused)"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "not a serialised ONNX ModelProto"


class TorchScriptModel(DownstreamModel):
    """A TorchScript archive (``torch.jit.save``), loaded with ``torch.jit.load`` on the CPU. Loading builds no
    Python objects from pickles; predicting runs the archive's TorchScript graph (see the module docstring)."""

    def __init__(self, card: ModelCard, model_dir: Path, weights: Path) -> None:
        super().__init__(card, model_dir)
        where = str(weights)
        self.module = _load_checked(weights, ERR_NOT_TORCHSCRIPT, 8, b"PK\x03\x04", "is not a zip archive",
                                    lambda path: torch.jit.load(path, map_location="cpu").eval())
        try:
            args = [a.name for a in self.module.forward.schema.arguments][1:]
        except (AttributeError, RuntimeError) as err:
            raise DownstreamError(ERR_NOT_TORCHSCRIPT.format(name=weights.name, detail=f"no forward ({err})")) from None
        names = [s.name for s in self.card.inputs]
        if args != names:
            raise DownstreamError(ERR_INPUT_NAMES.format(where=where, model=args, card=names)
                                  + " (forward's arguments, in order)")
        self._dry_run(2, where)

    @torch.no_grad()
    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        out = self.module(*(torch.from_numpy(inputs[s.name]) for s in self.card.inputs))
        if not isinstance(out, torch.Tensor):
            detail = f"it returned {type(out).__name__}"
            raise DownstreamError(ERR_OUTPUT.format(where=self.card.weights, detail=detail))
        return out.float().numpy()


ADAPTERS: dict[str, type[DownstreamModel]] = {"vct-reference": ReferenceModel, "onnx": OnnxModel,
                                              "torchscript": TorchScriptModel}


def load_model(model_dir: str | Path) -> DownstreamModel:
    """Load and check the model in ``model_dir`` (card + weights); DownstreamError naming what is wrong."""
    root = Path(model_dir)
    path = card_path(root)
    card = read_card_file(path)
    weights = verify_weights_file(card, root, path)
    return ADAPTERS[card.format](card, root, weights)


def predict_cohort(model: DownstreamModel, cohort_dir: str | Path, ids: Sequence[str] | None = None, *,
                   progress: Progress | None = None) -> pd.DataFrame:
    """Predictions for the patients of a cohort (``ids``, default every patient in attributes.csv order):
    a DataFrame with columns ``id`` and ``y_pred`` (the card's unit). ``progress(done, total, id)`` per patient."""
    from vctcore.measure.cohort import patient_ids

    root = Path(cohort_dir)
    ids = [str(i) for i in (ids if ids is not None else patient_ids(root))]
    preds = []
    for i, pid in enumerate(ids):
        preds.append(model.predict(read_ct(root / "patients" / pid / "ct.nii.gz")))
        if progress:
            progress(i + 1, len(ids), pid)
    return pd.DataFrame({"id": ids, "y_pred": np.asarray(preds, dtype=np.float64)})


__all__ = ["ADAPTERS", "DownstreamModel", "OnnxModel", "ReferenceModel", "TorchScriptModel", "load_model",
           "predict_cohort"]
