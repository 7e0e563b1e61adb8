"""Generation requests for background jobs: each bad field named in one line, the command a job runs,
and the time estimate from the workspace's own measured cohorts."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vctcore.generate_jobs import GenerateRequest, GenerateRequestError, seconds_per_patient
from vctcore.workspace import list_cohorts

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "assets" / "populations" / "adult_reference.yaml"


@pytest.mark.parametrize("change, message", [
    ({"n": 0}, "patients: 0 is not between 1 and 100000"),
    ({"steps": 0}, "steps: 0 is not between 1 and 1000"),
    ({"guidance": -1.0}, "guidance: -1.0 is not between 0 and 20"),
    ({"name": "../escape"}, "cohort name '../escape'"),
    ({"population": REPO / "README.md"}, "population README.md: "),
])
def test_bad_request_fields_are_named(change, message):
    req = GenerateRequest(**{"population": SPEC, "n": 2, "seed": 0, "name": "ok", **change})
    with pytest.raises(GenerateRequestError) as err:
        req.check()
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_command_names_every_choice(tmp_path):
    req = GenerateRequest(population=SPEC, n=3, seed=7, name="c1", steps=4, guidance=1.5, checkpoint=tmp_path)
    args = req.check().command(tmp_path / "ws")
    assert args[:2] == ["generate", "--population"] and args[2] == str(SPEC.resolve())
    pairs = dict(zip(args[3::2], args[4::2]))
    assert pairs == {"--n": "3", "--seed": "7", "--out": str((tmp_path / "ws" / "cohorts" / "c1").resolve()),
                     "--device": "auto", "--steps": "4", "--guidance": "1.5", "--checkpoint": str(tmp_path.resolve())}
    assert "--steps" not in GenerateRequest(population=SPEC, n=1, seed=0, name="c").command()


def _cohort(root: Path, name: str, rate: float, device: str = "cpu", sha: str = "a") -> None:
    d = root / "cohorts" / name
    (d / "patients" / "S0000").mkdir(parents=True)
    (d / "patients" / "S0000" / "ct.nii.gz").write_bytes(b"")
    (d / "attributes.csv").write_text("id\nS0000\n")
    (d / "cohort.json").write_text(json.dumps({"maker": "vctcore.generator", "n": 1, "device": device,
                                               "seconds_per_patient": rate,
                                               "checkpoint_sha256": {"diffusion.safetensors": sha}}))


def test_estimate_is_the_median_of_this_generator_on_this_device(tmp_path):
    for i, (rate, device, sha) in enumerate([(10.0, "cpu", "a"), (20.0, "cpu", "a"), (30.0, "cpu", "a"),
                                             (1.0, "cuda:0", "a"), (99.0, "cpu", "b")]):
        _cohort(tmp_path, f"c{i}", rate, device, sha)
    assert seconds_per_patient(list_cohorts(tmp_path), "cpu", {"diffusion.safetensors": "a"}) == 20.0
    assert seconds_per_patient(list_cohorts(tmp_path), "cuda", {"diffusion.safetensors": "a"}) == 1.0
    assert seconds_per_patient(list_cohorts(tmp_path), "cpu", {"diffusion.safetensors": "b"}) == 99.0
