"""Executors (vctcore.executors): the local executor, the refusal without Ray, and, marked ``ray`` (run by
``make test-all``), a local 2-CPU Ray cluster that must give the local executor's cohort file for file,
also when one of its workers is killed mid-generation.

The Ray tests use an untrained generator (tests/untrained_generator.py: the generator's real code paths,
random weights, about a second to write) and measure with ``--force`` (its images are not CT-like).
"""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from vctcore.cli import main
from vctcore.executors import RAY_MISSING, ExecutorError, ExecutorSpec, in_order, make_executor
from vctcore.executors.local import LocalExecutor


def _square(state, task: int) -> tuple:
    return state, task * task


def _setup() -> str:
    return "loaded"


def test_local_executor_one_worker_runs_here_in_order_after_one_setup() -> None:
    calls = []

    def setup() -> str:  # a closure: one worker runs in this process, so it need not pickle
        calls.append(1)
        return "state"

    with make_executor(ExecutorSpec("local", 1)) as ex:
        assert list(ex.map(_square, [3, 1, 2], setup=setup)) == [(0, ("state", 9)), (1, ("state", 1)),
                                                                 (2, ("state", 4))]
    assert calls == [1] and not ex.distributed


def test_local_executor_processes_return_every_result_once() -> None:
    got = LocalExecutor(2).map(_square, list(range(6)))
    assert list(in_order(got)) == [(None, i * i) for i in range(6)]


def test_in_order_and_spec_checks() -> None:
    assert list(in_order([(2, "c"), (0, "a"), (1, "b")])) == ["a", "b", "c"]
    with pytest.raises(ExecutorError, match="executor must be one of local, ray"):
        ExecutorSpec("dask")
    with pytest.raises(ExecutorError, match="only for the ray executor"):
        ExecutorSpec("local", 1, "auto")


@pytest.mark.parametrize("command", [["measure", "--cohort", "{tmp}"], ["phantom", "--n", "1", "--out", "{tmp}/p"],
                                     ["generate", "--n", "1", "--out", "{tmp}/s"]])
def test_ray_asked_for_without_ray_is_one_line(command, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails, as where it is not installed
    args = [a.format(tmp=tmp_path) for a in command] + ["--executor", "ray", "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"vct {command[0]}: error: {RAY_MISSING}"


def test_trial_command_line_overrides_the_configs_executor() -> None:
    import argparse

    import yaml

    from vctcore.cli.trial import _executor
    from vctcore.trial.config import parse_config

    trials = Path(__file__).resolve().parents[1] / "assets" / "trials"
    d = yaml.safe_load((trials / "paper_bfp.yaml").read_text())
    cfg = parse_config({**d, "workers": 3}, base=trials)

    def spec(executor=None, ray_address=None, workers=None, config=cfg):
        return _executor(argparse.Namespace(executor=executor, ray_address=ray_address, workers=workers), config)

    assert spec() == ExecutorSpec("local", 3) and spec(workers=1) == ExecutorSpec("local", 1)
    if pytest.importorskip("ray"):
        assert spec(ray_address="auto") == ExecutorSpec("ray", 0, "auto")
        on_ray = parse_config({**d, "executor": {"kind": "ray", "address": "auto", "workers": 4}}, base=trials)
        assert spec(config=on_ray) == ExecutorSpec("ray", 4, "auto")
        assert spec(executor="local", config=on_ray) == ExecutorSpec("local", 0)


# -- a local Ray cluster -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster with 2 CPUs for this module (shut down after it)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def local_cohort(tmp_path_factory) -> dict:
    """An untrained generator, and a 6-patient cohort it made and measured with the local executor."""
    from untrained_generator import write_untrained_generator

    root = tmp_path_factory.mktemp("executors")
    gen = write_untrained_generator(root / "generator")
    out = root / "local"
    assert main(["generate", "--checkpoint", str(gen), "--n", "6", "--seed", "4", "--out", str(out), "--device", "cpu",
                 "--quiet"]) == 0
    main(["measure", "--cohort", str(out), "--force", "--quiet"])
    return {"root": root, "generator": gen, "cohort": out}


def _same_cohort(a: Path, b: Path, measured: bool = True) -> None:
    """Two cohorts hold the same attribute table, measurements (but for the time each took) and voxels,
    patient for patient."""
    assert (a / "attributes.csv").read_text() == (b / "attributes.csv").read_text()
    if measured:
        ma, mb = (pd.read_csv(c / "measurements.csv", dtype=str, keep_default_na=False).drop(columns="seconds")
                  for c in (a, b))
        pd.testing.assert_frame_equal(ma, mb)
    ids = pd.read_csv(a / "attributes.csv", dtype={"id": str})["id"]
    for pid in ids:
        for name in ("ct.nii.gz", "seg.nii.gz"):
            x, y = nib.load(a / "patients" / pid / name), nib.load(b / "patients" / pid / name)
            assert np.array_equal(np.asarray(x.dataobj), np.asarray(y.dataobj)), f"{pid}/{name}"
            assert np.array_equal(x.affine, y.affine) and x.get_data_dtype() == y.get_data_dtype()


@pytest.mark.ray
def test_ray_generate_and_measure_equal_local_file_for_file(ray_cluster, local_cohort) -> None:
    out = local_cohort["root"] / "ray"
    t0 = time.perf_counter()
    assert main(["generate", "--checkpoint", str(local_cohort["generator"]), "--n", "6", "--seed", "4", "--out",
                 str(out), "--device", "cpu", "--executor", "ray", "--workers", "2", "--quiet"]) == 0
    main(["measure", "--cohort", str(out), "--force", "--executor", "ray", "--workers", "2", "--quiet"])
    print(f"ray generate + measure of 6 patients: {time.perf_counter() - t0:.1f} s")
    _same_cohort(local_cohort["cohort"], out)


@pytest.mark.ray
def test_killed_ray_worker_still_yields_the_full_cohort(ray_cluster, local_cohort) -> None:
    from vctcore.executors.ray_cluster import RayExecutor
    from vctcore.generator import Generator
    from vctcore.population import PopulationSpec
    from vctcore.assets import default_population
    from vctcore.synthetic_cohort import generate_cohort

    out = local_cohort["root"] / "killed"
    gen = Generator.from_pretrained(local_cohort["generator"], device="cpu")
    table = PopulationSpec.from_yaml(default_population()).sample(6, seed=4)
    ex = RayExecutor(workers=2)
    seen: dict = {}

    def kill_one_worker() -> None:  # as soon as the first patient is written, kill a worker holding others
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not list(out.glob("patients/*/ct.nii.gz")):
            time.sleep(0.02)
        seen["complete_at_kill"] = len(list(out.glob("patients/*/ct.nii.gz")))
        ray_cluster.kill(ex.actors[0], no_restart=False)  # Ray restarts it and retries its batches

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    generate_cohort(gen, table, seed=4, out=out, executor=ex, device="cpu")
    killer.join()
    assert seen["complete_at_kill"] < 6
    _same_cohort(local_cohort["cohort"], out, measured=False)


@pytest.mark.ray
def test_trial_store_on_ray_equals_local(ray_cluster, local_cohort) -> None:
    """The trial's synthetic patients and their measurements: the same files from Ray workers."""
    from vctcore.executors.ray_cluster import RayExecutor
    from vctcore.generator import Generator
    from vctcore.trial.ground_truth import ImageRef, measure_images
    from vctcore.trial.store import PatientStore

    gen = Generator.from_pretrained(local_cohort["generator"], device="cpu")
    requests = pd.DataFrame({"source_id": ["a", "b", "c"], "replica": [0, 0, 1], "sex": ["M", "F", "F"],
                             "age_years": [40, 60, 60]})
    made = {}
    for name, ex in (("local", None), ("ray", RayExecutor(workers=2))):
        store = PatientStore(local_cohort["root"] / f"store_{name}", executor=ex, device="cpu")
        rows = store.synthetic(gen, requests, seed=1, conditioning=("sex", "age_years"), steps=2)
        refs = [ImageRef(r.patient_id, Path(r.dir) / "ct.nii.gz", Path(r.dir) / "seg.nii.gz")
                for r in rows.itertuples()]
        made[name] = (rows, measure_images(refs, cache_dir=store.root / "measurements", workers=1, executor=ex))
    (loc, loc_meas), (ray_rows, ray_meas) = made["local"], made["ray"]
    assert list(loc["patient_id"]) == list(ray_rows["patient_id"]) and loc_meas == ray_meas
    for a, b in zip(loc["dir"], ray_rows["dir"]):
        for name in ("ct.nii.gz", "seg.nii.gz"):
            assert np.array_equal(np.asarray(nib.load(Path(a) / name).dataobj),
                                  np.asarray(nib.load(Path(b) / name).dataobj))


@pytest.mark.ray
def test_a_task_error_reaches_the_caller_as_itself(ray_cluster) -> None:
    from vctcore.executors.ray_cluster import RayExecutor
    from vctcore.trial.ground_truth import _measure_task

    with pytest.raises(Exception) as info:
        list(RayExecutor(1).map(_measure_task, [("/nonexistent/ct.nii.gz", "/nonexistent/seg.nii.gz", "own", 1)]))
    assert not isinstance(info.value, ray_cluster.exceptions.RayError)
    assert "nonexistent" in str(info.value) and "\n" not in str(info.value)
