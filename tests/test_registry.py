"""Uploaded models: a good ONNX model and its card are kept; every bad upload is refused with one specific
line and leaves nothing in the workspace (the app's Model page shows that line)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from test_downstream import _onnx_mean_model
from vctcore.downstream.card import DownstreamError, read_card_file, sha256_file, write_card
from vctcore.downstream.registry import SHIPPED, import_model, list_models

REFERENCE_CARD = SHIPPED / "bfp_reference" / "card.yaml"


def _upload(tmp: Path, **onnx_kw) -> tuple[bytes, bytes]:
    """(model.onnx bytes, card.yaml bytes) of a small foreign ONNX model with a card that fits it."""
    model = _onnx_mean_model(tmp / "model.onnx", **onnx_kw)
    card = replace(read_card_file(REFERENCE_CARD), name="mean-model", format="onnx", weights="model.onnx",
                   weights_sha256=sha256_file(model), backbone=None)
    write_card(card, tmp)
    return model.read_bytes(), (tmp / "card.yaml").read_bytes()


def _nothing_left(root: Path) -> bool:
    base = root / "models"
    return not base.exists() or not any(base.iterdir())


def test_a_good_upload_is_checked_and_listed(tmp_path: Path) -> None:
    weights, card = _upload(tmp_path)
    dest = import_model("vendor-bfp", "model.onnx", weights, "card.yaml", card, root=tmp_path / "ws")
    assert dest == tmp_path / "ws" / "models" / "vendor-bfp" and (dest / "model.onnx").is_file()
    entries = {(m.source, m.name) for m in list_models(tmp_path / "ws")}
    assert ("workspace", "vendor-bfp") in entries and ("shipped", "bfp_reference") in entries
    with pytest.raises(DownstreamError, match="already exists"):
        import_model("vendor-bfp", "model.onnx", weights, "card.yaml", card, root=tmp_path / "ws")


@pytest.mark.parametrize("case, message", [
    ("not_onnx", r"^model.onnx is not an ONNX model \(.*a text file\)$"),
    ("shape", r"input 'coronal' has shape \['N', 1, 256, 96\] in the model, the card says \[batch, 1, 288, 96\]"),
    ("card_field", r"missing field 'unit'"),
    ("too_big", r"^model.onnx is 1.0 MB, over the 0.5 MB upload limit$"),
    ("bad_name", r"^model name 'a b': use 1-64 letters"),
    ("wrong_type", r"^model.pkl: a model file must be ONNX"),
])
def test_bad_uploads_are_refused_with_one_line_and_leave_nothing(tmp_path: Path, case: str, message: str) -> None:
    root = tmp_path / "ws"
    name, fname, kw, limit = "m", "model.onnx", {}, 200.0
    if case == "shape":
        kw = {"hw": (256, 96)}
    weights, card = _upload(tmp_path, **kw)
    if case == "shape":  # the card keeps the reference's 288 x 96 inputs
        d = yaml.safe_load(card)
        d["weights_sha256"] = sha256_file(tmp_path / "model.onnx")
        card = yaml.safe_dump(d).encode()
    if case == "not_onnx":
        weights = b"this is not a network\n"
        d = yaml.safe_load(card)
        import hashlib

        d["weights_sha256"] = hashlib.sha256(weights).hexdigest()
        card = yaml.safe_dump(d).encode()
    if case == "card_field":
        d = yaml.safe_load(card)
        del d["unit"]
        card = yaml.safe_dump(d).encode()
    if case == "too_big":
        weights, limit = weights + b"\0" * 2**20, 0.5
    if case == "bad_name":
        name = "a b"
    if case == "wrong_type":
        fname = "model.pkl"
    with pytest.raises(DownstreamError, match=message) as err:
        import_model(name, fname, weights, "card.yaml", card, root=root, max_mb=limit)
    assert "\n" not in str(err.value) and ".m." not in str(err.value)  # no temporary directory named
    assert _nothing_left(root)
