"""Where models under test live: the shipped reference models (``checkpoints/downstream/<name>/``) and
the models users bring (``<workspace>/models/<name>/``), and how an uploaded model gets there.

An upload (an ONNX or TorchScript file and its card) is written to a temporary directory beside its
destination, checked exactly as :func:`vctcore.downstream.models.load_model` checks every model (card
fields, weights sha256, file format, input and output shapes, a dry run; nothing is unpickled), and
only then renamed into place: a bad upload leaves nothing behind.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vctcore.downstream.card import DownstreamError
from vctcore.assets import downstream_dir
from vctcore.workspace import workspace_root

#: the shipped reference models (:func:`vctcore.assets.downstream_dir`)
SHIPPED = downstream_dir()
MODELS = "models"
#: the largest model file accepted from an upload (MB): ``$VCT_MAX_UPLOAD_MB``, else 200 (Streamlit's own
#: default upload limit)
MAX_UPLOAD_MB = float(os.environ.get("VCT_MAX_UPLOAD_MB", 200.0))
WEIGHT_SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".torchscript": "torchscript"}
CARD_NAMES = ("card.yaml", "card.yml", "card.json")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class ModelEntry:
    """A model directory: ``name``, ``path``, ``source`` ("shipped" or "workspace")."""

    name: str
    path: Path
    source: str


def models_root(root: Path | None = None) -> Path:
    return (root or workspace_root()) / MODELS


def list_models(root: Path | None = None) -> list[ModelEntry]:
    """Shipped reference models, then the workspace's models, each sorted by name (directories with a card)."""
    out = []
    for source, base in (("shipped", SHIPPED), ("workspace", models_root(root))):
        for d in sorted(p for p in base.glob("*") if p.is_dir()):
            if any((d / c).is_file() for c in CARD_NAMES):
                out.append(ModelEntry(d.name, d, source))
    return out


def import_model(name: str, weights_name: str, weights: bytes, card_name: str, card: bytes, *,
                 root: Path | None = None, max_mb: float = MAX_UPLOAD_MB) -> Path:
    """Check an uploaded model and keep it as ``<workspace>/models/<name>/``; returns that directory.
    DownstreamError with one specific line for: a bad name or one already taken, a file over ``max_mb``,
    an unknown file type, and anything :func:`load_model` refuses (the card's own message)."""
    from vctcore.downstream.models import load_model

    if not NAME_RE.match(name or ""):
        raise DownstreamError(f"model name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a "
                              "letter or digit")
    size_mb = len(weights) / 2**20
    if size_mb > max_mb:
        raise DownstreamError(f"{weights_name} is {size_mb:.1f} MB, over the {max_mb:g} MB upload limit")
    suffix = Path(weights_name).suffix.lower()
    if suffix not in WEIGHT_SUFFIXES:
        raise DownstreamError(f"{weights_name}: a model file must be ONNX (.onnx) or TorchScript (.pt, .torchscript)")
    card_suffix = Path(card_name).suffix.lower()
    if card_suffix not in (".yaml", ".yml", ".json"):
        raise DownstreamError(f"{card_name}: a model card is a YAML (.yaml) or JSON (.json) file")
    dest = models_root(root) / name
    if dest.exists():
        raise DownstreamError(f"a model named {name!r} already exists in {dest.parent}; choose another name")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{name}."))
    try:
        (tmp / Path(weights_name).name).write_bytes(weights)
        (tmp / ("card.json" if card_suffix == ".json" else "card.yaml")).write_bytes(card)
        load_model(tmp)
        tmp.rename(dest)
    except DownstreamError as err:
        raise DownstreamError(str(err).replace(str(tmp) + "/", "").replace(str(tmp), name)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
