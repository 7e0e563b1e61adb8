"""Model files: safetensors weights with their config in the header, sha256 manifests.

Nothing here unpickles: weights load with ``safetensors`` and resumable training state with
``torch.load(weights_only=True)``. Every failure names the file and what is wrong with it.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

FORMAT = "vct-generator/1"


class CheckpointError(ValueError):
    """A checkpoint file that is missing, corrupt, truncated or of another architecture."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def tensors_sha256(path: str | os.PathLike) -> str:
    """sha256 over a safetensors file's tensors (names, dtypes, shapes, values), not its header metadata:
    safetensors writes the metadata in no fixed order, so two saves of the same weights can differ as files."""
    h = hashlib.sha256()
    for name, t in sorted(load_file(str(path)).items()):
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_sha256(weights: Path, expected: str | None, manifest: Path) -> str:
    """sha256 of ``weights``; CheckpointError naming it when it is not ``expected``, the digest that
    ``manifest`` records for it (a corrupt or modified file)."""
    digest = sha256_file(weights)
    if digest != expected:
        raise CheckpointError(f"{weights}: sha256 differs from {manifest} (corrupt or modified file)")
    return digest


def verified_manifest(weights: Path, manifest: Path) -> dict[str, Any]:
    """The JSON ``manifest`` of a single-file model (empty when absent) with ``sha256`` set; CheckpointError
    naming ``weights`` when the manifest records another sha256 (a corrupt or modified file)."""
    meta = json.loads(manifest.read_text()) if manifest.exists() else {}
    meta["sha256"] = check_sha256(weights, meta["sha256"], manifest) if meta.get("sha256") else sha256_file(weights)
    return meta


def save_module(module: nn.Module, path: str | os.PathLike, *, kind: str, config: dict[str, Any]) -> Path:
    """Write ``module``'s weights to ``path`` (safetensors, atomic) with kind and config as metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    meta = {"format": FORMAT, "kind": kind, "config": json.dumps(config)}
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The safetensors header metadata of ``path``; CheckpointError when it is not a vct model file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: file is empty or truncated (not a safetensors file)")
            n = int.from_bytes(head, "little")
            if n <= 0 or n > 100_000_000 or n + 8 > path.stat().st_size:
                raise CheckpointError(f"{path}: not a safetensors file (bad header length); "
                                      "pickled .pt/.ckpt files are refused")
            header = json.loads(fh.read(n))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: not a safetensors file (unreadable header)") from None
    meta = header.get("__metadata__") or {}
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a vct generator file (format {meta.get('format')!r}, expected {FORMAT!r})")
    return meta


def read_tensors(path: Path, kind: str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """(metadata, tensors) of a vct model file holding a ``kind`` model; CheckpointError otherwise."""
    meta = read_metadata(path)
    if meta.get("kind") != kind:
        raise CheckpointError(f"{path}: holds a {meta.get('kind')!r} model, expected {kind!r}")
    try:
        return meta, load_file(str(path))
    except (SafetensorError, OSError, RuntimeError) as err:
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({err})") from None


def load_module(module: nn.Module, path: str | os.PathLike, *, kind: str) -> dict[str, Any]:
    """Load weights of ``kind`` from ``path`` into ``module`` (strict); returns the stored config."""
    path = Path(path)
    meta, state = read_tensors(path, kind)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[:3])
        raise CheckpointError(f"{path}: weights do not fit the {kind} architecture of this config ({detail})") from None
    return json.loads(meta.get("config", "{}"))


def load_matching(module: nn.Module, path: str | os.PathLike, *, kind: str,
                  state: Mapping[str, torch.Tensor] | None = None) -> list[str]:
    """Warm start: load the tensors of ``kind`` from ``path`` into ``module`` wherever the name and shape
    match, leaving the rest as initialised (e.g. embeddings of conditioning attributes that the old
    model did not read). ``state``: the file's tensors when the caller has read them already
    (:func:`read_tensors`). Returns the names of ``module``'s entries left as initialised;
    CheckpointError when nothing matches."""
    path = Path(path)
    if state is None:
        _, state = read_tensors(path, kind)
    own = module.state_dict()
    fit = {k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if not fit:
        raise CheckpointError(f"{path}: no tensor fits the {kind} architecture of this config")
    module.load_state_dict(fit, strict=False)
    return [k for k in own if k not in fit]


def save_state(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Resumable training state (tensors, numbers, strings, dicts, lists only), written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Training state saved by ``save_state``; never unpickles arbitrary objects (weights_only)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt archives
        raise CheckpointError(f"{path}: unreadable training state ({type(err).__name__}: {err})") from None
