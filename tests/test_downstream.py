"""Downstream models under test (vctcore.downstream): cards, preprocessing, the reference model's training,
the three runtime adapters, ONNX/TorchScript export, and the train-downstream / export-downstream /
predict commands, on 6 half-resolution phantoms (12 x 12 x 16 mm) and a tiny network."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from generator_fixtures import write_tiny_cohort

from vctcore.cli import main
from vctcore.cli.downstream import read_ids_file, target_values
from vctcore.cohort import read_attributes
from vctcore.downstream.card import (OPTIONAL, REQUIRED, DownstreamError, ModelCard, load_card, read_card_file,
                                     write_card)
from vctcore.downstream.models import OnnxModel, load_model, predict_cohort
from vctcore.downstream.preprocess import DEFAULT_PREPROCESSING, body_frame, plane_images, slice_index
from vctcore.downstream.reference import ReferenceConfig
from vctcore.downstream.train import step_lr, train_reference
from vctcore.models.checkpoint import sha256_file
from vctcore.volume import CTVolume, make_affine, read_ct

TINY_NET = ReferenceConfig(block_inplanes=(4, 8, 8, 16), norm_groups=4)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def cohort(tmp_path_factory) -> Path:
    return write_tiny_cohort(tmp_path_factory.mktemp("downstream") / "cohort")


@pytest.fixture(scope="session")
def targets(cohort) -> pd.DataFrame:
    table = read_attributes(cohort)
    return pd.DataFrame({"id": table["id"], "y": table["bfp_pct"]})


@pytest.fixture(scope="session")
def reference_dir(cohort, targets, tmp_path_factory) -> Path:
    return train_reference(cohort, targets, target="bfp_pct", out=tmp_path_factory.mktemp("ref") / "model", seed=1,
                           epochs=2, batch_size=4, slices_per_patient=2, config=TINY_NET)


@pytest.fixture(scope="session")
def onnx_dir(reference_dir, tmp_path_factory) -> Path:
    """The ONNX export, made through ``vct export-downstream`` (its end-to-end test)."""
    out = tmp_path_factory.mktemp("onnx") / "exported"
    assert main(["export-downstream", str(reference_dir), "--onnx", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def cts(cohort) -> list[CTVolume]:
    return [read_ct(p / "ct.nii.gz") for p in sorted((cohort / "patients").iterdir())[:3]]


def _card_dict(reference_dir: Path) -> dict:
    return yaml.safe_load((reference_dir / "card.yaml").read_text())


def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _box_ct(spacing_mm, centre_mm=(250.0, 200.0, 1000.0), half_mm=(100.0, 60.0, 300.0),
            extent_mm=(600.0, 450.0, 1800.0)) -> CTVolume:
    """Air with one box of soft tissue (100 HU) centred at ``centre_mm`` (X, Y, Z), not at the volume centre."""
    sp = np.asarray(spacing_mm)
    data = np.full(tuple(np.round(np.asarray(extent_mm) / sp).astype(int)), -1000.0, np.float32)
    lo = np.round((np.asarray(centre_mm) - half_mm) / sp).astype(int)
    hi = np.round((np.asarray(centre_mm) + half_mm) / sp).astype(int)
    data[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = 100.0
    return CTVolume(data, make_affine(tuple(spacing_mm)))


def _onnx_mean_model(path: Path, names=("coronal", "sagittal"), hw=(288, 96), out_shape=("N",)) -> Path:
    """A foreign ONNX model written with onnx.helper: y = mean(coronal) + mean(sagittal) per sample."""
    from onnx import TensorProto, helper, numpy_helper, save

    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 1, *hw]) for n in names]
    axes = numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes")
    nodes = [helper.make_node("ReduceMean", [n, "axes"], [f"m{i}"], keepdims=0) for i, n in enumerate(names)]
    nodes.append(helper.make_node("Sum", [f"m{i}" for i in range(len(names))], ["y"]))
    if len(out_shape) == 2:
        nodes[-1].output[0] = "s"
        two = numpy_helper.from_array(np.array([-1, 2], np.int64), "two")
        nodes.append(helper.make_node("Concat", ["s", "s"], ["y0"], axis=0))
        nodes.append(helper.make_node("Reshape", ["y0", "two"], ["y"]))
        inits = [axes, two]
    else:
        inits = [axes]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))
    graph = helper.make_graph(nodes, "mean", inputs, [out], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    save(model, str(path))
    return path


def _foreign_dir(reference_dir: Path, root: Path, *, weights: str, fmt: str, **card_changes) -> Path:
    """A model directory holding ``root/weights`` and the reference card rewritten for it."""
    card = read_card_file(reference_dir / "card.yaml")
    card = replace(card, format=fmt, weights=weights, weights_sha256=sha256_file(root / weights), backbone=None,
                   **card_changes)
    write_card(card, root)
    return root


# --------------------------------------------------------------------------- cards
@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_card_round_trip(reference_dir, tmp_path, fmt):
    card = load_card(reference_dir)
    model = _copy_model(reference_dir, tmp_path / "m")
    written = write_card(card, model, fmt=fmt)
    assert written.name == f"card.{fmt}" and not (model / f"card.{'json' if fmt == 'yaml' else 'yaml'}").exists()
    assert load_card(model) == card
    assert ModelCard.from_dict(json.loads(json.dumps(card.to_dict()))) == card


@pytest.mark.parametrize("field", REQUIRED)
def test_card_missing_field_names_the_field_and_the_file(reference_dir, tmp_path, field):
    data = _card_dict(reference_dir)
    del data[field]
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(DownstreamError, match=rf"{path}: missing field '{field}'"):
        read_card_file(path)


@pytest.mark.parametrize("where, key", [(None, "checkpoint_url"), ("preprocessing", "window_level")])
def test_card_unknown_field(reference_dir, tmp_path, where, key):
    data = _card_dict(reference_dir)
    (data[where] if where else data)[key] = 1
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(DownstreamError, match=rf"unknown field\(s\) {(where + '.') if where else ''}{key}"):
        read_card_file(path)
    assert {"description", "license", "backbone"} == set(OPTIONAL)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(target="iq_points"), r"field 'target': 'iq_points' is not a continuous attribute"),
    (lambda d: d.update(target="sex"), r"field 'target': 'sex' is not a continuous attribute"),
    (lambda d: d.update(unit="kg"), r"field 'unit': 'kg' does not match bfp_pct's unit '%'"),
    (lambda d: d.update(format="pickle"), r"field 'format': 'pickle' is not one of onnx, torchscript"),
    (lambda d: d["inputs"][1].update(shape=[1, 256, 96]), r"field 'inputs\[1\].shape': \[1, 256, 96\] disagrees"),
    (lambda d: d["inputs"][0].update(plane="axial"), r"field 'inputs\[0\].plane': 'axial' is not one of"),
    (lambda d: d["preprocessing"].update(hu_window=[200, -200]), r"hu_window': low must be below high"),
    (lambda d: d["preprocessing"].pop("pixel_mm"), r"missing field 'preprocessing.pixel_mm'"),
    (lambda d: d.update(weights="../model.safetensors"), r"field 'weights': must be a file name"),
    (lambda d: d.pop("backbone"), r"missing field 'backbone' \(vct-reference models need it\)"),
])
def test_card_bad_values(reference_dir, tmp_path, change, message):
    data = _card_dict(reference_dir)
    change(data)
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(DownstreamError, match=message):
        read_card_file(path)


def test_card_problems_of_the_directory(reference_dir, tmp_path):
    with pytest.raises(DownstreamError, match="model directory does not exist"):
        load_card(tmp_path / "nowhere")
    with pytest.raises(DownstreamError, match="no model card"):
        load_card(tmp_path)
    model = _copy_model(reference_dir, tmp_path / "m")
    (model / "card.json").write_text("{}")
    with pytest.raises(DownstreamError, match="both card.yaml and card.json"):
        load_card(model)
    (model / "card.json").unlink()
    (model / "card.yaml").write_text("name: [unclosed")
    with pytest.raises(DownstreamError, match="not a readable model card"):
        load_card(model)


def test_weights_sha256_mismatch_is_refused(reference_dir, tmp_path):
    model = _copy_model(reference_dir, tmp_path / "m")
    data = bytearray((model / "model.safetensors").read_bytes())
    data[-3] ^= 0xFF
    (model / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(DownstreamError, match=r"sha256 of model.safetensors is [0-9a-f]{64}, the card says"):
        load_model(model)
    (model / "model.safetensors").unlink()
    with pytest.raises(DownstreamError, match=r"weights file .*model.safetensors \(field 'weights'\) does not exist"):
        load_model(model)


# --------------------------------------------------------------------------- preprocessing
@pytest.mark.parametrize("spacing", [(6.0, 6.0, 8.0), (2.0, 3.0, 5.0)])
def test_inputs_are_unit_images_centred_on_the_body(spacing):
    ct = _box_ct(spacing)
    images = plane_images(ct, DEFAULT_PREPROCESSING)
    height, width = DEFAULT_PREPROCESSING.input_size
    for plane, half_cols in (("coronal", 100.0), ("sagittal", 60.0)):
        image = images[plane]
        assert image.shape == (1, height, width) and image.dtype == np.float32
        assert 0.0 <= image.min() and image.max() <= 1.0
        rows = np.flatnonzero(image[0].max(axis=1) > 0.5)
        cols = np.flatnonzero(image[0].max(axis=0) > 0.5)
        # the box (600 mm tall) lies in the image's middle, whatever the grid and wherever the box is
        assert abs((rows[0] + rows[-1]) / 2 - (height - 1) / 2) <= 0.5
        assert abs((cols[0] + cols[-1]) / 2 - (width - 1) / 2) <= 1.0
        assert abs(len(rows) * 8.0 - 600.0) <= 16.0 and abs(len(cols) * 8.0 - 2 * half_cols) <= 16.0
    # the same body on two grids gives nearly the same images
    other = plane_images(_box_ct((3.0, 2.0, 4.0)), DEFAULT_PREPROCESSING)
    assert np.mean(np.abs(other["coronal"] - images["coronal"])) < 0.01


def test_body_middle_is_the_body_centroid_not_the_volume_centre():
    ct = _box_ct((6.0, 6.0, 8.0))
    frame = body_frame(ct)
    np.testing.assert_allclose(np.asarray(frame.centroid) * np.asarray(ct.spacing_mm), (247.0, 197.0, 996.0), atol=6)
    assert slice_index(frame, "coronal") == round(frame.centroid[1]) != ct.shape[1] // 2
    # training slices: uniform over the middle third of the body's extent along the normal
    rng = np.random.default_rng(0)
    draws = [slice_index(frame, "sagittal", rng) for _ in range(400)]
    start, stop = frame.middle_third(0)
    assert min(draws) == start and max(draws) == stop - 1
    assert abs((stop - start) - (frame.hi[0] - frame.lo[0] + 1) / 3) <= 1
    with pytest.raises(ValueError, match="no body"):
        body_frame(CTVolume(np.full((8, 8, 8), -1000.0, np.float32) + np.arange(8)[:, None, None], np.eye(4)))


def test_phantom_coronal_slice_passes_through_the_body_centre(cts):
    ct = cts[0]
    frame = body_frame(ct)
    body = ct.data > -500
    centre = np.argwhere(body).mean(axis=0)
    assert np.all(np.abs(np.asarray(frame.centroid) - centre) < 1.0)
    image = plane_images(ct, DEFAULT_PREPROCESSING)["coronal"][0]
    height, width = image.shape
    assert image[height // 2 - 4:height // 2 + 4, width // 2 - 4:width // 2 + 4].mean() > 0.3  # tissue, not air
    assert image[:, :4].max() == 0.0 and image[:, -4:].max() == 0.0  # air beside the body


# --------------------------------------------------------------------------- training and the adapters
def test_training_writes_card_weights_and_log(reference_dir, cohort, targets):
    card = load_card(reference_dir)
    assert card.weights == "model.safetensors" and card.format == "vct-reference"
    assert card.weights_sha256 == sha256_file(reference_dir / "model.safetensors")
    assert card.target == "bfp_pct" and card.unit == "%" and card.preprocessing == DEFAULT_PREPROCESSING
    assert [(s.name, s.plane, s.shape) for s in card.inputs] == [("coronal", "coronal", (1, 288, 96)),
                                                                ("sagittal", "sagittal", (1, 288, 96))]
    t = card.training_data
    assert t["ids"] == list(targets["id"]) and t["seed"] == 1 and t["target"] == "bfp_pct"
    assert t["attributes_sha256"] == sha256_file(cohort / "attributes.csv") and t["epochs"] == 2
    assert {"train_mae", "wall_time_s", "device"} <= set(card.metrics)
    assert card.backbone["config"]["block_inplanes"] == [4, 8, 8, 16]
    log = pd.read_csv(reference_dir / "training_log.csv")
    assert list(log["epoch"]) == [1, 2] and np.isfinite(log["loss"]).all()
    assert not any(p.suffix in (".pt", ".pth", ".pkl", ".ckpt") for p in reference_dir.iterdir())


def test_step_schedule_divides_by_ten_at_half_and_ninety_percent():
    assert [step_lr(1.0, e, 10) for e in (0, 4, 5, 8, 9)] == [1.0, 1.0, 0.1, 0.1, pytest.approx(0.01)]


def test_training_is_deterministic_for_a_seed(cohort, targets, tmp_path):
    from vctcore.models.checkpoint import tensors_sha256

    digests = []
    for run in ("a", "b"):
        out = train_reference(cohort, targets.iloc[:2], target="bfp_pct", out=tmp_path / run, seed=5, epochs=1,
                              slices_per_patient=1, config=TINY_NET)
        digests.append(tensors_sha256(out / "model.safetensors"))
    assert digests[0] == digests[1]


def test_augmentation_keeps_air_at_zero_and_values_in_range():
    from vctcore.downstream.train import augment

    x = torch.zeros(4, 1, 32, 32)
    x[:, :, 8:24, 8:24] = 0.5
    out = augment(x, np.random.default_rng(0), torch.Generator().manual_seed(0), flip=True)
    assert out.shape == x.shape and 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    assert float(out[:, :, :2].abs().max()) == 0.0  # air: no noise (evaluation images have none there)
    body = out[:, :, 13:19, 13:19]
    assert float(body.min()) > 0.4 and float(body.max()) < 0.6 and float(body.std()) > 0.005


def test_time_budget_cuts_the_epochs():
    from vctcore.downstream.train import _plan_epochs

    assert _plan_epochs(40, 1, elapsed_s=30.0, epoch_s=10.0, max_minutes=None) == 40
    assert _plan_epochs(40, 1, elapsed_s=30.0, epoch_s=10.0, max_minutes=2.0) == 10  # 90 s left: 9 more
    assert _plan_epochs(40, 1, elapsed_s=300.0, epoch_s=10.0, max_minutes=2.0) == 1
    assert _plan_epochs(5, 1, elapsed_s=1.0, epoch_s=1.0, max_minutes=60.0) == 5


def test_targets_are_checked(cohort, targets, tmp_path):
    with pytest.raises(DownstreamError, match="no CT for patient"):
        train_reference(cohort, pd.DataFrame({"id": ["P0000", "nobody"], "y": [1.0, 2.0]}), target="bfp_pct",
                        out=tmp_path / "m")
    with pytest.raises(DownstreamError, match="missing column"):
        train_reference(cohort, targets.rename(columns={"y": "bfp"}), target="bfp_pct", out=tmp_path / "m")
    with pytest.raises(DownstreamError, match="no finite y"):
        train_reference(cohort, targets.assign(y=np.nan), target="bfp_pct", out=tmp_path / "m")


def test_reference_model_predicts_finite_values(reference_dir, cohort, cts):
    model = load_model(reference_dir)
    preds = model.predict_batch(cts)
    assert preds.shape == (3,) and np.isfinite(preds).all()
    assert model.predict(cts[1]) == pytest.approx(preds[1], abs=1e-5)
    seen = []
    table = predict_cohort(model, cohort, ["P0001", "P0002"], progress=lambda d, n, pid: seen.append((d, n, pid)))
    assert list(table.columns) == ["id", "y_pred"] and list(table["id"]) == ["P0001", "P0002"]
    assert seen == [(1, 2, "P0001"), (2, 2, "P0002")]
    assert table["y_pred"].tolist() == pytest.approx(preds[1:].tolist(), abs=1e-5)


def test_onnx_export_predicts_as_the_torch_model(reference_dir, onnx_dir, cts):
    card = load_card(onnx_dir)
    assert card.format == "onnx" and card.weights == "model.onnx"
    assert card.weights_sha256 == sha256_file(onnx_dir / "model.onnx")
    assert sorted(p.name for p in onnx_dir.iterdir()) == ["card.yaml", "model.onnx"]
    exported, reference = load_model(onnx_dir), load_model(reference_dir)
    assert isinstance(exported, OnnxModel)
    assert [i.shape[0] for i in exported.session.get_inputs()] != [1, 1]  # a free batch axis
    np.testing.assert_allclose(exported.predict_batch(cts), reference.predict_batch(cts), atol=1e-4)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_torchscript_round_trip(reference_dir, cts, tmp_path):
    reference = load_model(reference_dir)
    root = tmp_path / "ts"
    root.mkdir()
    example = tuple(torch.rand(2, 1, 288, 96) for _ in range(2))
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(reference.net, example), str(root / "model.torchscript"))
    model = load_model(_foreign_dir(reference_dir, root, weights="model.torchscript", fmt="torchscript"))
    np.testing.assert_allclose(model.predict_batch(cts), reference.predict_batch(cts), atol=1e-4)
    from vctcore.downstream.export import export_torchscript

    exported = load_model(export_torchscript(reference_dir, tmp_path / "exported"))
    assert exported.card.format == "torchscript" and exported.card.weights == "model.torchscript"
    np.testing.assert_allclose(exported.predict_batch(cts[:1]), reference.predict_batch(cts[:1]), atol=1e-4)


def test_foreign_onnx_model_loads_and_predicts(reference_dir, cts, tmp_path):
    root = tmp_path / "mean"
    root.mkdir()
    _onnx_mean_model(root / "model.onnx")
    model = load_model(_foreign_dir(reference_dir, root, weights="model.onnx", fmt="onnx"))
    from vctcore.downstream.preprocess import model_inputs

    inputs = model_inputs(cts[0], model.card)
    assert model.predict(cts[0]) == pytest.approx(inputs["coronal"].mean() + inputs["sagittal"].mean(), rel=1e-5)


def test_text_file_named_model_onnx_is_refused(reference_dir, tmp_path):
    root = tmp_path / "text"
    root.mkdir()
    (root / "model.onnx").write_text("this is not a network\n")
    _foreign_dir(reference_dir, root, weights="model.onnx", fmt="onnx")
    with pytest.raises(DownstreamError, match=r"^model.onnx is not an ONNX model \(.*a text file\)$"):
        load_model(root)
    (root / "model.onnx").write_bytes(b"\x08\x07garbage that is not protobuf")
    _foreign_dir(reference_dir, root, weights="model.onnx", fmt="onnx")
    with pytest.raises(DownstreamError, match=r"^model.onnx is not an ONNX model"):
        load_model(root)


def test_onnx_inputs_that_disagree_with_the_card_are_refused(reference_dir, tmp_path):
    root = tmp_path / "shape"
    root.mkdir()
    _onnx_mean_model(root / "model.onnx", hw=(256, 96))
    _foreign_dir(reference_dir, root, weights="model.onnx", fmt="onnx")
    with pytest.raises(DownstreamError, match=r"input 'coronal' has shape \['N', 1, 256, 96\] in the model, "
                                              r"the card says \[batch, 1, 288, 96\]"):
        load_model(root)
    _onnx_mean_model(root / "model.onnx", names=("front", "side"))
    _foreign_dir(reference_dir, root, weights="model.onnx", fmt="onnx")
    with pytest.raises(DownstreamError, match=r"the model's inputs are \['front', 'side'\], the card's inputs are "
                                              r"\['coronal', 'sagittal'\]"):
        load_model(root)
    _onnx_mean_model(root / "model.onnx", out_shape=("N", 2))
    _foreign_dir(reference_dir, root, weights="model.onnx", fmt="onnx")
    with pytest.raises(DownstreamError, match="one value per sample; its output has shape"):
        load_model(root)


def test_torchscript_checks(reference_dir, tmp_path):
    root = tmp_path / "ts"
    root.mkdir()
    torch.save({"w": torch.zeros(2)}, root / "model.torchscript")  # a zip archive, but a pickle inside
    _foreign_dir(reference_dir, root, weights="model.torchscript", fmt="torchscript")
    with pytest.raises(DownstreamError, match=r"model.torchscript is not a TorchScript archive"):
        load_model(root)

    class Wrong(torch.nn.Module):
        def forward(self, front: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
            return front.mean(dim=(1, 2, 3)) + side.mean(dim=(1, 2, 3))

    torch.jit.save(torch.jit.script(Wrong()), str(root / "model.torchscript"))
    _foreign_dir(reference_dir, root, weights="model.torchscript", fmt="torchscript")
    with pytest.raises(DownstreamError, match=r"the model's inputs are \['front', 'side'\]"):
        load_model(root)


# --------------------------------------------------------------------------- command line
def _one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"vct {command}: error: "), err
    return err[0]


def test_cli_train_downstream_end_to_end(cohort, tmp_path, capsys):
    ids = tmp_path / "ids.txt"
    ids.write_text("# training patients\nP0000\nP0001\nP0002\nP0003\n")
    out = tmp_path / "model"
    assert main(["train-downstream", "--cohort", str(cohort), "--target", "mmp_pct", "--ids", str(ids),
                 "--out", str(out), "--epochs", "1", "--quiet"]) == 0
    stdout = capsys.readouterr().out
    assert f"from {cohort / 'attributes.csv'}" in stdout and "model written to" in stdout
    card = load_card(out)
    assert card.target == "mmp_pct" and card.training_data["ids"] == ["P0000", "P0001", "P0002", "P0003"]
    assert np.isfinite(load_model(out).predict(read_ct(cohort / "patients" / "P0004" / "ct.nii.gz")))


def test_cli_predict_writes_a_csv(onnx_dir, cohort, tmp_path, capsys):
    out = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(onnx_dir), "--cohort", str(cohort), "--out", str(out), "--quiet"]) == 0
    table = pd.read_csv(out, dtype={"id": str})
    assert list(table.columns) == ["id", "y_pred"] and len(table) == 6 and np.isfinite(table["y_pred"]).all()


def test_ids_files_and_target_sources(cohort, tmp_path):
    csv = tmp_path / "ids.csv"
    csv.write_text("id,y\nP0000,12.5\nP0001,30\n")
    ids, y = read_ids_file(csv)
    assert ids == ["P0000", "P0001"] and y.tolist() == [12.5, 30.0]
    plain = tmp_path / "ids.txt"
    plain.write_text("id\nP0003\n\nP0004\n")
    assert read_ids_file(plain) == (["P0003", "P0004"], None)
    fake = tmp_path / "cohort"
    fake.mkdir()
    read_attributes(cohort).to_csv(fake / "attributes.csv", index=False)
    values, source = target_values(fake, ["P0001"], "bfp_pct")
    assert source.name == "attributes.csv" and values[0] == pytest.approx(read_attributes(cohort)["bfp_pct"][1])
    pd.DataFrame({"id": ["P0001"], "bfp_pct": [33.3]}).to_csv(fake / "measurements.csv", index=False)
    values, source = target_values(fake, ["P0001"], "bfp_pct")
    assert source.name == "measurements.csv" and values.tolist() == [33.3]


@pytest.mark.parametrize("make_args, message", [
    (lambda c, t: ["--ids", str(t / "none.txt")], "file does not exist"),
    (lambda c, t: ["--ids", _ids(t, "P0000\nP0000\n")], "duplicate id"),
    (lambda c, t: ["--ids", _ids(t, "P0000\nP9999\n")], "no bfp_pct for id(s) P9999"),
    (lambda c, t: ["--ids", _ids(t, "id,y\nP0000,1\nP9999,2\n")], "no CT for patient(s) P9999"),
    (lambda c, t: ["--ids", _ids(t, "pid,y\nP0000,1\n")], "a CSV needs an 'id' column"),
    (lambda c, t: ["--ids", _ids(t, "P0000\n"), "--target", "height_cm"], "--target must be one of"),
    (lambda c, t: ["--ids", _ids(t, "P0000\n"), "--epochs", "0"], "--epochs must be at least 1"),
    (lambda c, t: ["--ids", _ids(t, "P0000\n"), "--cohort", str(t)], "not a cohort directory"),
])
def test_cli_train_downstream_bad_input(cohort, tmp_path, capsys, make_args, message):
    args = ["train-downstream", "--cohort", str(cohort), "--target", "bfp_pct", "--out", str(tmp_path / "m"),
            "--quiet", *make_args(cohort, tmp_path)]
    assert main(args) == 2
    assert message in _one_error_line(capsys, "train-downstream")


def _ids(root: Path, text: str) -> str:
    path = root / "ids_file"
    path.write_text(text)
    return str(path)


def test_cli_export_and_predict_bad_input(reference_dir, onnx_dir, cohort, tmp_path, capsys):
    cases = [
        (["export-downstream", str(reference_dir), "--onnx", str(tmp_path / "out.onnx")], "goes to a directory"),
        (["export-downstream", str(onnx_dir), "--onnx", str(tmp_path / "again")], "only vct-reference models"),
        (["export-downstream", str(tmp_path / "nowhere"), "--onnx", str(tmp_path / "x")], "does not exist"),
        (["export-downstream", str(reference_dir)], "give --onnx OUTDIR"),
        (["predict", "--model", str(tmp_path), "--cohort", str(cohort)], "no model card"),
        (["predict", "--model", str(onnx_dir), "--cohort", str(tmp_path)], "not a cohort directory"),
    ]
    for args, message in cases:
        assert main(args) == 2, args
        assert message in _one_error_line(capsys, args[0]), args
