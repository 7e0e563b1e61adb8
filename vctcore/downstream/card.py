"""Model cards of downstream models (the models under test of a virtual clinical trial).

A model directory holds its weights and ``card.yaml`` (or ``card.json``): what the model predicts
(``target``, an attribute of :mod:`vctcore.attributes`, in ``unit``), in which file format, what it reads
(``inputs``: one 2D slice per input, shape ``[1, H, W]`` = channel, rows, columns) and how a CT becomes
those inputs (``preprocessing``: HU window, pixel size in mm, image size in pixels, which slice), who it is
meant for, what it was trained on and how well it did. Loading checks every field and the weights'
sha256; every problem raises :class:`DownstreamError` naming the file and the field.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from vctcore.attributes import ATTRIBUTES
from vctcore.models.checkpoint import sha256_file

CARD_NAMES = ("card.yaml", "card.json")
FORMATS = ("onnx", "torchscript", "vct-reference")
TASKS = ("regression",)
PLANES = ("coronal", "sagittal")
SLICE_RULES = ("body_middle",)

REQUIRED = ("name", "task", "target", "unit", "format", "weights", "weights_sha256", "inputs", "preprocessing",
            "intended_population", "training_data", "metrics")
OPTIONAL = ("description", "license", "backbone")
INPUT_KEYS = ("name", "plane", "shape")
PREPROCESSING_KEYS = ("hu_window", "pixel_mm", "input_size", "slice")

# --- error messages (format strings; tests match them) -------------------------------------------
ERR_NO_CARD = "{where}: no model card (card.yaml or card.json) in this directory"
ERR_TWO_CARDS = "{where}: both card.yaml and card.json; keep one"
ERR_NOT_DIR = "{where}: model directory does not exist"
ERR_PARSE = "{where}: not a readable model card ({detail})"
ERR_NOT_MAPPING = "{where}: a model card must be a mapping of fields, got {kind}"
ERR_MISSING = "{where}: missing field {field!r}"
ERR_UNKNOWN = "{where}: unknown field(s) {fields}; allowed: {allowed}"
ERR_VALUE = "{where}: field {field!r}: {problem}"
ERR_WEIGHTS_MISSING = "{where}: weights file {weights} (field 'weights') does not exist"
ERR_SHA = "{where}: sha256 of {weights} is {actual}, the card says {expected} (corrupt or modified file)"


class DownstreamError(ValueError):
    """A downstream model directory, card or weights file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class InputSpec:
    """One model input: its ``name`` (the ONNX/forward argument), the slice ``plane`` it reads and its
    per-sample ``shape`` ``(1, H, W)`` (channel, rows, columns); the batch axis comes first at run time."""

    name: str
    plane: str
    shape: tuple[int, int, int]


@dataclass(frozen=True)
class Preprocessing:
    """How a CT becomes the inputs: HU ``hu_window`` (lo, hi) mapped to [0, 1], square pixels of
    ``pixel_mm`` mm, images of ``input_size`` (H, W) pixels, taken at ``slice`` (``body_middle``: through
    the centroid of the body mask)."""

    hu_window: tuple[float, float]
    pixel_mm: float
    input_size: tuple[int, int]
    slice: str = "body_middle"


@dataclass(frozen=True)
class ModelCard:
    """The card of a downstream regression model; see the module docstring for the fields."""

    name: str
    task: str
    target: str
    unit: str
    format: str
    weights: str
    weights_sha256: str
    inputs: tuple[InputSpec, ...]
    preprocessing: Preprocessing
    intended_population: Any
    training_data: Any
    metrics: dict[str, Any]
    description: str | None = None
    license: str | None = None
    backbone: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, dicts, numbers, strings) in field order; optional fields left out when None."""
        d = asdict(self)
        d["inputs"] = [{"name": i.name, "plane": i.plane, "shape": list(i.shape)} for i in self.inputs]
        p = self.preprocessing
        d["preprocessing"] = {"hu_window": [float(v) for v in p.hu_window], "pixel_mm": float(p.pixel_mm),
                              "input_size": [int(v) for v in p.input_size], "slice": p.slice}
        return {k: v for k, v in d.items() if not (k in OPTIONAL and v is None)}

    @classmethod
    def from_dict(cls, data: Any, where: str = "model card") -> ModelCard:
        """Check ``data`` (a parsed card) and build the card; DownstreamError naming ``where`` and the field."""
        if not isinstance(data, Mapping):
            raise DownstreamError(ERR_NOT_MAPPING.format(where=where, kind=type(data).__name__))
        _check_keys(data, REQUIRED, OPTIONAL, where)
        for key in ("name", "task", "target", "unit", "format", "weights", "weights_sha256"):
            if not isinstance(data[key], str) or not data[key].strip():
                raise _bad(where, key, f"must be a non-empty string, got {data[key]!r}")
        _check_choice(data["task"], TASKS, "task", where)
        _check_choice(data["format"], FORMATS, "format", where)
        target = ATTRIBUTES.get(data["target"])
        if target is None or target.is_categorical:
            known = [n for n, a in ATTRIBUTES.items() if not a.is_categorical]
            raise _bad(where, "target", f"{data['target']!r} is not a continuous attribute; known: {', '.join(known)}")
        if data["unit"] != target.unit:
            raise _bad(where, "unit", f"{data['unit']!r} does not match {target.name}'s unit {target.unit!r}")
        if Path(data["weights"]).name != data["weights"]:
            raise _bad(where, "weights", f"must be a file name inside the model directory, got {data['weights']!r}")
        preprocessing = _preprocessing(data["preprocessing"], where)
        inputs = _inputs(data["inputs"], preprocessing, where)
        if not isinstance(data["metrics"], Mapping):
            raise _bad(where, "metrics", f"must be a mapping, got {type(data['metrics']).__name__}")
        backbone = data.get("backbone")
        if backbone is not None and not isinstance(backbone, Mapping):
            raise _bad(where, "backbone", f"must be a mapping, got {type(backbone).__name__}")
        if data["format"] == "vct-reference" and backbone is None:
            raise DownstreamError(ERR_MISSING.format(where=where, field="backbone") + " (vct-reference models need it)")
        return cls(name=data["name"], task=data["task"], target=data["target"], unit=data["unit"],
                   format=data["format"], weights=data["weights"], weights_sha256=data["weights_sha256"].lower(),
                   inputs=inputs, preprocessing=preprocessing, intended_population=data["intended_population"],
                   training_data=data["training_data"], metrics=dict(data["metrics"]),
                   description=data.get("description"), license=data.get("license"),
                   backbone=dict(backbone) if backbone is not None else None)


def _bad(where: str, key: str, problem: str) -> DownstreamError:
    return DownstreamError(ERR_VALUE.format(where=where, field=key, problem=problem))


def _check_keys(data: Mapping, required: tuple[str, ...], optional: tuple[str, ...], where: str,
                prefix: str = "") -> None:
    for key in required:
        if key not in data or data[key] is None:
            raise DownstreamError(ERR_MISSING.format(where=where, field=prefix + key))
    unknown = sorted(str(k) for k in data if k not in required and k not in optional)
    if unknown:
        allowed = ", ".join(prefix + k for k in (*required, *optional))
        raise DownstreamError(ERR_UNKNOWN.format(where=where, fields=", ".join(prefix + k for k in unknown),
                                                 allowed=allowed))


def _check_choice(value: Any, allowed: tuple[str, ...], key: str, where: str) -> None:
    if value not in allowed:
        raise _bad(where, key, f"{value!r} is not one of {', '.join(allowed)}")


def _numbers(value: Any, n: int, key: str, where: str, *, integer: bool = False) -> tuple:
    kinds = (int,) if integer else (int, float)
    if (not isinstance(value, (list, tuple)) or len(value) != n
            or not all(isinstance(v, kinds) and not isinstance(v, bool) for v in value)):
        what = "integers" if integer else "numbers"
        raise _bad(where, key, f"must be a list of {n} {what}, got {value!r}")
    return tuple(int(v) for v in value) if integer else tuple(float(v) for v in value)


def _preprocessing(data: Any, where: str) -> Preprocessing:
    if not isinstance(data, Mapping):
        raise _bad(where, "preprocessing", f"must be a mapping, got {type(data).__name__}")
    _check_keys(data, PREPROCESSING_KEYS, (), where, prefix="preprocessing.")
    lo, hi = _numbers(data["hu_window"], 2, "preprocessing.hu_window", where)
    if not lo < hi:
        raise _bad(where, "preprocessing.hu_window", f"low must be below high, got [{lo:g}, {hi:g}]")
    pixel = data["pixel_mm"]
    if not isinstance(pixel, (int, float)) or isinstance(pixel, bool) or not pixel > 0:
        raise _bad(where, "preprocessing.pixel_mm", f"must be a positive number of mm, got {pixel!r}")
    size = _numbers(data["input_size"], 2, "preprocessing.input_size", where, integer=True)
    if min(size) < 8:
        raise _bad(where, "preprocessing.input_size", f"must be at least 8 x 8 pixels, got {list(size)}")
    _check_choice(data["slice"], SLICE_RULES, "preprocessing.slice", where)
    return Preprocessing((lo, hi), float(pixel), size, data["slice"])


def _inputs(data: Any, prep: Preprocessing, where: str) -> tuple[InputSpec, ...]:
    if not isinstance(data, (list, tuple)) or not data:
        raise _bad(where, "inputs", f"must be a non-empty list of {{name, plane, shape}}, got {data!r}")
    specs = []
    for i, item in enumerate(data):
        key = f"inputs[{i}]"
        if not isinstance(item, Mapping):
            raise _bad(where, key, f"must be a mapping with {', '.join(INPUT_KEYS)}, got {item!r}")
        _check_keys(item, INPUT_KEYS, (), where, prefix=f"{key}.")
        if not isinstance(item["name"], str) or not item["name"]:
            raise _bad(where, f"{key}.name", f"must be a non-empty string, got {item['name']!r}")
        _check_choice(item["plane"], PLANES, f"{key}.plane", where)
        shape = _numbers(item["shape"], 3, f"{key}.shape", where, integer=True)
        if shape != (1, *prep.input_size):
            raise _bad(where, f"{key}.shape", f"{list(shape)} disagrees with preprocessing.input_size "
                                              f"{list(prep.input_size)} (expected [1, {prep.input_size[0]}, "
                                              f"{prep.input_size[1]}])")
        specs.append(InputSpec(item["name"], item["plane"], shape))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise _bad(where, "inputs", f"input names must be unique, got {names}")
    return tuple(specs)


def card_path(model_dir: str | os.PathLike) -> Path:
    """The card file of ``model_dir``; DownstreamError when there is none, or two."""
    root = Path(model_dir)
    if not root.is_dir():
        raise DownstreamError(ERR_NOT_DIR.format(where=root))
    found = [root / n for n in CARD_NAMES if (root / n).exists()]
    if not found:
        raise DownstreamError(ERR_NO_CARD.format(where=root))
    if len(found) > 1:
        raise DownstreamError(ERR_TWO_CARDS.format(where=root))
    return found[0]


def read_card_file(path: str | os.PathLike) -> ModelCard:
    """Parse and check one card file (YAML or JSON by its suffix), without looking at the weights."""
    path = Path(path)
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as err:
        detail = " ".join(str(err).split())[:200]
        raise DownstreamError(ERR_PARSE.format(where=path, detail=f"{type(err).__name__}: {detail}")) from None
    return ModelCard.from_dict(data, str(path))


def load_card(model_dir: str | os.PathLike, *, verify_weights: bool = True) -> ModelCard:
    """The checked card of ``model_dir``; with ``verify_weights`` the weights file must exist and have the
    card's sha256."""
    path = card_path(model_dir)
    card = read_card_file(path)
    if verify_weights:
        verify_weights_file(card, Path(model_dir), path)
    return card


def verify_weights_file(card: ModelCard, model_dir: Path, where: Path | str) -> Path:
    """The weights path of ``card`` inside ``model_dir``; DownstreamError when missing or its sha256 differs."""
    weights = Path(model_dir) / card.weights
    if not weights.is_file():
        raise DownstreamError(ERR_WEIGHTS_MISSING.format(where=where, weights=weights))
    actual = sha256_file(weights)
    if actual != card.weights_sha256:
        raise DownstreamError(ERR_SHA.format(where=where, weights=weights.name, actual=actual,
                                             expected=card.weights_sha256))
    return weights


def write_card(card: ModelCard, model_dir: str | os.PathLike, *, fmt: str = "yaml") -> Path:
    """Write ``card`` as ``model_dir/card.yaml`` (or ``card.json`` with ``fmt="json"``) atomically; the other
    card file, if any, is removed so the directory holds one card."""
    if fmt not in ("yaml", "json"):
        raise ValueError(f"write_card: fmt must be 'yaml' or 'json', got {fmt!r}")
    root = Path(model_dir)
    root.mkdir(parents=True, exist_ok=True)
    data = _plain(card.to_dict())
    if fmt == "json":
        text = json.dumps(data, indent=2)
    else:
        text = yaml.dump(data, Dumper=_CardDumper, sort_keys=False, width=110)
    path = root / f"card.{fmt}"
    tmp = root / f".{path.name}.{os.getpid()}.tmp"
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    (root / f"card.{'json' if fmt == 'yaml' else 'yaml'}").unlink(missing_ok=True)
    return path


class _CardDumper(yaml.SafeDumper):
    """Safe YAML with lists of scalars on one line (``shape: [1, 288, 96]``)."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(isinstance(v, (str, int, float, bool)) or v is None for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_CardDumper.add_representer(list, _represent_list)


def _plain(value: Any) -> Any:
    """``value`` as YAML/JSON-safe plain data: str subclasses (e.g. torch's version) to str, numpy scalars to
    Python numbers, tuples to lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if hasattr(value, "item"):  # numpy scalar
        return _plain(value.item())
    raise TypeError(f"write_card: cannot store {type(value).__name__} {value!r} in a card")


def with_weights(card: ModelCard, model_dir: str | os.PathLike, weights: str, **changes: Any) -> ModelCard:
    """A copy of ``card`` pointing at ``model_dir/weights`` with that file's sha256 (and other ``changes``)."""
    digest = sha256_file(Path(model_dir) / weights)
    return replace(card, weights=weights, weights_sha256=digest, **changes)


__all__ = ["CARD_NAMES", "FORMATS", "PLANES", "DownstreamError", "InputSpec", "ModelCard", "Preprocessing",
           "card_path", "load_card", "read_card_file", "verify_weights_file", "with_weights", "write_card"]
