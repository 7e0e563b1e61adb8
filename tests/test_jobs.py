"""Background jobs with real `vct` processes: progress, completion, failure, cancel and resume, a
vanished supervisor, two jobs on one output, records read back as a restarted app would."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from vctcore.cohort import read_attributes
from vctcore.jobs import JobError, cancel_job, list_jobs, load_job, resume_job, start_job


def _wait(job, until, timeout: float = 180.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = load_job(job.dir)
        if until(job):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job.id} stuck in {job.status}: {job.log_tail()}")


def _phantoms(out: Path, n: int) -> list[str]:
    return ["phantom", "--n", str(n), "--seed", "3", "--out", str(out), "--workers", "1"]


def test_a_job_runs_reports_progress_and_finishes(tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    job = start_job(_phantoms(out, 2), kind="phantoms", title="2 phantoms", output=out, root=tmp_path)
    assert job.status == "starting" and job.command.startswith("vct phantom --n 2")
    seen = _wait(job, lambda j: j.progress() is not None or not j.active)
    job = _wait(job, lambda j: not j.active)
    assert job.status == "done" and job.returncode == 0 and job.attempts == 1, job.log_tail()
    assert len(read_attributes(out)) == 2
    p = job.progress()
    assert p["stage"] == "phantoms" and p["done"] == p["total"] == 2 and p["fraction"] == 1.0
    assert seen.progress() is not None
    # a restarted app finds it in the workspace
    assert [j.id for j in list_jobs(tmp_path)] == [job.id]


def test_a_failing_command_is_recorded_with_its_error(tmp_path: Path) -> None:
    job = start_job(["phantom", "--n", "2", "--out", str(tmp_path / "c"), "--population", str(tmp_path / "none.yaml")],
                    kind="phantoms", title="bad", root=tmp_path)
    job = _wait(job, lambda j: not j.active)
    assert job.status == "failed" and job.returncode == 2
    assert "does not exist" in job.error and "none.yaml" in job.error


def test_cancel_then_resume_completes_the_same_output(tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    job = start_job(_phantoms(out, 2), kind="phantoms", title="2 phantoms", output=out, root=tmp_path)
    job = _wait(job, lambda j: j.status == "running")
    # a second job on the same output is refused while the first runs
    with pytest.raises(JobError, match="already being written by job"):
        start_job(_phantoms(out, 2), kind="phantoms", title="again", output=out, root=tmp_path)
    job = cancel_job(job)
    assert job.status == "cancelled" and not job.active
    with pytest.raises(JobError, match="is not running"):
        cancel_job(job)
    job = resume_job(job)
    job = _wait(job, lambda j: not j.active)
    assert job.status == "done" and job.attempts == 2, job.log_tail()
    assert len(read_attributes(out)) == 2
    assert job.log_tail().count("attempt") >= 2


def test_a_vanished_supervisor_reads_as_died_and_can_be_resumed(tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    job = start_job(_phantoms(out, 3), kind="phantoms", title="3 phantoms", output=out, root=tmp_path)
    job = _wait(job, lambda j: j.status == "running" and j.pid)
    os.killpg(job.pid, signal.SIGKILL)
    job = _wait(job, lambda j: j.status == "died", timeout=30)
    assert "without recording an end" in job.error
    job = _wait(resume_job(job), lambda j: not j.active)
    assert job.status == "done" and len(read_attributes(out)) == 3


def test_not_a_job_record(tmp_path: Path) -> None:
    with pytest.raises(JobError, match="not a job record"):
        load_job(tmp_path)


def test_a_job_outlives_the_process_that_started_it(tmp_path: Path) -> None:
    """As when the app restarts: the starting process exits at once; the job runs on and records its end."""
    import subprocess
    import sys

    out = tmp_path / "cohort"
    code = ("import sys; from pathlib import Path; from vctcore.jobs import start_job; "
            f"start_job({_phantoms(out, 1)!r}, kind='phantoms', title='1', output=Path({str(out)!r}), "
            f"root=Path({str(tmp_path)!r}))")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    (job,) = list_jobs(tmp_path)
    job = _wait(job, lambda j: not j.active)
    assert job.status == "done" and len(read_attributes(out)) == 1


def test_two_writers_of_one_patient_leave_one_whole_copy(tmp_path: Path) -> None:
    """Two trials making the same synthetic patient at once (the patient store's atomic rename)."""
    import threading

    import numpy as np

    from vctcore.trial.store import META, PatientStore
    from vctcore.volume import CTVolume, LabelMap, read_ct

    affine = np.diag([6.0, 6.0, 8.0, 1.0])
    hu = np.full((16, 12, 20), -1000.0, np.float32)
    hu[4:12, 3:9, 5:15] = 40.0  # a block of soft tissue in air
    ct = CTVolume(hu, affine)
    seg = LabelMap(np.zeros((16, 12, 20), np.uint8), affine, {})
    d = tmp_path / "synthetic" / "g" / "k"
    errors: list[BaseException] = []

    def write(k: int) -> None:
        try:
            PatientStore._write(d, ct, seg, {"writer": k})
        except BaseException as err:  # noqa: BLE001 (collected for the assertion)
            errors.append(err)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(p.name for p in d.iterdir()) == sorted(["ct.nii.gz", "seg.nii.gz", META])
    assert read_ct(d / "ct.nii.gz").data.shape == (16, 12, 20)
    assert [p.name for p in d.parent.iterdir()] == ["k"]  # no temporary directory left
