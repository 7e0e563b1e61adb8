"""Background jobs: long ``vct`` commands (trials, generation) run as detached processes with a record in
the workspace, so they outlive the page that started them, its reloads and an app restart.

    <workspace>/jobs/<job id>/job.json      what runs and how it stands (see :class:`Job`)
    <workspace>/jobs/<job id>/log.txt       the command's stdout and stderr
    <workspace>/jobs/<job id>/progress.json the running stage: {stage, done, total, label, started, start_done, updated}

A job is a supervisor process (``python -m vctcore.jobs JOBDIR``, its own session and process group)
that runs ``python -m vctcore.cli ARGS`` and records its end. Cancelling sends SIGTERM to the group;
resuming runs the same command again (every long ``vct`` command resumes from what it wrote). A job
whose supervisor vanished without recording an end (killed, machine restarted) reads as ``died``.
Jobs that write the same output never run at once: :func:`start_job` refuses a second one.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vctcore.cohort import _atomic_text
from vctcore.provenance import utc_now
from vctcore.workspace import workspace_root

JOBS = "jobs"
JOB_JSON, LOG, PROGRESS = "job.json", "log.txt", "progress.json"
#: environment variable naming the file where ``vct`` progress bars also write their state
PROGRESS_ENV = "VCT_PROGRESS_FILE"
ACTIVE = ("starting", "running")
FINISHED = ("done", "failed", "cancelled", "died")


class JobError(ValueError):
    """A job that cannot be started, cancelled or resumed (the message says why)."""


@dataclass
class Job:
    """One background job. ``args`` are the ``vct`` arguments (without ``vct``); ``output`` the file or
    directory it writes (None: none in particular); ``status`` one of starting, running, done, failed,
    cancelled, died; ``attempts`` counts runs (resumes included); times are UTC ISO 8601."""

    id: str
    kind: str
    title: str
    args: list[str]
    output: str | None
    created_utc: str
    status: str = "starting"
    started_utc: str | None = None
    finished_utc: str | None = None
    pid: int | None = None
    returncode: int | None = None
    error: str | None = None
    attempts: int = 0
    dir: Path = field(default=Path("."), compare=False)

    @property
    def log_path(self) -> Path:
        return self.dir / LOG

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def command(self) -> str:
        """The command line as a user would type it."""
        return " ".join(["vct", *self.args])

    def log_tail(self, n_chars: int = 4000) -> str:
        """The end of the log (progress bars' carriage returns folded to their last state per line)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 4 * n_chars))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        lines = [ln.rsplit("\r", 1)[-1] if "\r" in ln.rstrip("\r") else ln.rstrip("\r") for ln in text.split("\n")]
        return "\n".join(lines)[-n_chars:]

    def progress(self) -> dict[str, Any] | None:
        """The running stage's progress: stage, done, total, label, fraction (0-1) and eta_s (seconds
        left in this stage, None until two items are done); None before the first report."""
        try:
            p = json.loads((self.dir / PROGRESS).read_text())
        except (OSError, ValueError):
            return None
        done, total = int(p.get("done", 0)), int(p.get("total", 0) or 0)
        p["fraction"] = min(1.0, done / total) if total else 0.0
        p["eta_s"] = None
        made = done - int(p.get("start_done", 0))
        if made >= 2 and total > done:
            p["eta_s"] = (float(p["updated"]) - float(p["started"])) / made * (total - done)
        return p

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("dir")
        return d


def jobs_root(root: Path | None = None) -> Path:
    return (root or workspace_root()) / JOBS


def _write(job: Job) -> None:
    _atomic_text(job.dir / JOB_JSON, json.dumps(job.to_dict(), indent=2))


def _alive(pid: int | None, job_dir: Path) -> bool:
    """True when ``pid`` is this job's supervisor (not a recycled pid)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ProcessLookupError):
        return False
    state = ""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (OSError, IndexError):
        pass
    return state != "Z" and str(job_dir) in cmd


def load_job(job_dir: str | os.PathLike) -> Job:
    """The job recorded in ``job_dir``; an active job whose supervisor is gone reads as ``died``."""
    job_dir = Path(job_dir)
    try:
        d = json.loads((job_dir / JOB_JSON).read_text())
    except (OSError, ValueError) as err:
        raise JobError(f"{job_dir}: not a job record ({err})") from None
    job = Job(**{k: v for k, v in d.items() if k in Job.__dataclass_fields__ and k != "dir"}, dir=job_dir)
    if job.active and not _alive(job.pid, job_dir):
        # a supervisor just spawned may not have written its pid yet
        age = time.time() - (job_dir / JOB_JSON).stat().st_mtime
        if job.status == "running" or age > 30:
            job.status, job.error = "died", job.error or "the job's process ended without recording an end"
    return job


def list_jobs(root: Path | None = None, kind: str | None = None) -> list[Job]:
    """Jobs of the workspace, newest first (``kind`` filters)."""
    out = []
    for d in jobs_root(root).glob(f"*/{JOB_JSON}"):
        try:
            job = load_job(d.parent)
        except JobError:
            continue
        if kind is None or job.kind == kind:
            out.append(job)
    return sorted(out, key=lambda j: (j.created_utc, j.id), reverse=True)


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """An exclusive lock on the workspace's job table (two app sessions starting jobs at once)."""
    base = jobs_root(root)
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _same_output(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and Path(a).resolve() == Path(b).resolve()


def _spawn(job: Job) -> None:
    """Record the job as starting, then start its supervisor (which records its own pid)."""
    job.pid = None
    _write(job)
    subprocess.Popen([sys.executable, "-m", "vctcore.jobs", str(job.dir)], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_job(args: Sequence[str], *, kind: str, title: str, output: str | os.PathLike | None = None,
              root: Path | None = None) -> Job:
    """Start ``vct ARGS`` in the background and return its record. JobError when a running job already
    writes ``output``."""
    root = root or workspace_root()
    out = None if output is None else str(Path(output).resolve())
    with _locked(root):
        for other in list_jobs(root):
            if other.active and _same_output(other.output, out):
                raise JobError(f"{out} is already being written by job {other.id} ({other.title}); wait for it or "
                               "cancel it")
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        job_id = f"{stamp}-{kind}-{uuid.uuid4().hex[:6]}"
        job = Job(id=job_id, kind=kind, title=title, args=[str(a) for a in args], output=out,
                  created_utc=utc_now(), dir=jobs_root(root) / job_id)
        job.dir.mkdir(parents=True)
        _spawn(job)
    return job


def resume_job(job: Job, root: Path | None = None) -> Job:
    """Run a finished (failed, cancelled or died) job's command again in the same record."""
    root = root or job.dir.parent.parent
    with _locked(root):
        job = load_job(job.dir)
        if job.active:
            raise JobError(f"job {job.id} is still {job.status}")
        for other in list_jobs(root):
            if other.id != job.id and other.active and _same_output(other.output, job.output):
                raise JobError(f"{job.output} is already being written by job {other.id} ({other.title})")
        job.status, job.returncode, job.error, job.finished_utc = "starting", None, None, None
        _spawn(job)
    return job


def cancel_job(job: Job, *, wait_s: float = 10.0) -> Job:
    """Stop a running job (SIGTERM to its process group; SIGKILL after ``wait_s``); returns it re-read."""
    job = load_job(job.dir)
    deadline = time.monotonic() + wait_s
    while job.status == "starting" and not job.pid and time.monotonic() < deadline:
        time.sleep(0.1)  # its supervisor is starting and has not recorded its pid yet
        job = load_job(job.dir)
    if not job.active or not job.pid:
        raise JobError(f"job {job.id} is not running ({job.status})")
    try:
        os.killpg(job.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and _alive(job.pid, job.dir):
        time.sleep(0.1)
    if _alive(job.pid, job.dir):
        try:
            os.killpg(job.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        job = load_job(job.dir)
        job.status, job.finished_utc, job.error = "cancelled", utc_now(), "killed after it ignored SIGTERM"
        _write(job)
    return load_job(job.dir)


def _last_error(text: str) -> str | None:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errs = [ln for ln in lines if "error" in ln.lower()]
    return (errs or lines or [None])[-1]


def supervise(job_dir: Path) -> int:
    """The supervisor's body: run the job's command, record its status and return code."""
    cancelled = {"flag": False}
    child: subprocess.Popen | None = None

    def on_term(signum, frame) -> None:  # noqa: ARG001
        cancelled["flag"] = True
        if child is not None and child.poll() is None:
            child.terminate()

    signal.signal(signal.SIGTERM, on_term)  # before the job reads as running: a cancel is never lost
    job = load_job(job_dir)
    job.status, job.started_utc, job.pid, job.attempts = "running", utc_now(), os.getpid(), job.attempts + 1
    _write(job)
    (job_dir / PROGRESS).unlink(missing_ok=True)
    env = {**os.environ, PROGRESS_ENV: str(job_dir / PROGRESS), "PYTHONUNBUFFERED": "1"}
    with open(job_dir / LOG, "a") as log:
        log.write(f"--- {utc_now()} attempt {job.attempts}: {job.command}\n")
        log.flush()
        rc = -signal.SIGTERM
        if not cancelled["flag"]:
            child = subprocess.Popen([sys.executable, "-m", "vctcore.cli", *job.args], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT, env=env)
            if cancelled["flag"] and child.poll() is None:
                child.terminate()
            rc = child.wait()
    job = load_job(job_dir)
    job.returncode, job.finished_utc = rc, utc_now()
    if cancelled["flag"]:
        job.status, job.error = "cancelled", "cancelled"
    elif rc == 0:
        job.status = "done"
    else:
        job.status, job.error = "failed", _last_error(job.log_tail(2000)) or f"exit code {rc}"
    _write(job)
    return 0


if __name__ == "__main__":
    sys.exit(supervise(Path(sys.argv[1])))
