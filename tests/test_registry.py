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


#: each bad upload of the issue, and the line that must name what is wrong
BAD_UPLOADS = {
    "not_onnx": r"model.onnx is not an ONNX model \(.*a text file\)$",
    "shape": r"input 'coronal' has shape \['N', 1, 256, 96\] in the model, the card says \[batch, 1, 288, 96\]",
    "card_field": r"missing field 'unit'",
    "too_big": r"model.onnx is 1.0 MB, over the 0.5 MB upload limit$",
}


def bad_upload(case: str, tmp: Path) -> tuple[Path, Path]:
    """(model file, card file) of the bad upload ``case`` (BAD_UPLOADS), written into ``tmp``; "too_big"
    is 1 MB, over a 0.5 MB limit."""
    weights, card = _upload(tmp, **({"hw": (256, 96)} if case == "shape" else {}))
    d = yaml.safe_load(card)
    if case == "not_onnx":
        weights = b"this is not a network\n"
    if case == "card_field":
        del d["unit"]
    if case == "too_big":
        weights = weights + b"\0" * 2**20
    (tmp / "model.onnx").write_bytes(weights)
    d["weights_sha256"] = sha256_file(tmp / "model.onnx")  # the card matches the file it names
    (tmp / "card.yaml").write_text(yaml.safe_dump(d))
    return tmp / "model.onnx", tmp / "card.yaml"


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_uploads_are_refused_with_one_line_and_leave_nothing(tmp_path: Path, case: str) -> None:
    root = tmp_path / "ws"
    model, card = bad_upload(case, tmp_path)
    with pytest.raises(DownstreamError, match=BAD_UPLOADS[case]) as err:
        import_model("m", model.name, model.read_bytes(), card.name, card.read_bytes(), root=root, max_mb=0.5)
    assert "\n" not in str(err.value) and ".m." not in str(err.value)  # no temporary directory named
    assert _nothing_left(root)


@pytest.mark.parametrize("name, fname, message", [("a b", "model.onnx", r"^model name 'a b': use 1-64 letters"),
                                                  ("m", "model.pkl", r"^model.pkl: a model file must be ONNX")])
def test_bad_names_and_file_types(tmp_path: Path, name: str, fname: str, message: str) -> None:
    weights, card = _upload(tmp_path)
    with pytest.raises(DownstreamError, match=message):
        import_model(name, fname, weights, "card.yaml", card, root=tmp_path / "ws")
    assert _nothing_left(tmp_path / "ws")
