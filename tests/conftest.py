"""Shared fixtures: the Streamlit app served on a free port, and a headless Debian chromium."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
    "--disable-background-networking", "--disable-component-update", "--no-first-run",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _skip_or_fail(message: str) -> None:
    """Missing browser tooling fails under CI (env CI set) and skips elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def serve_app(env: dict[str, str] | None = None, log_name: str = "streamlit.log") -> Iterator[str]:
    """``streamlit run app.py`` in its own process group (extra ``env``); yields its URL once
    /_stcore/health answers, and stops it after."""
    port = _free_port()
    streamlit = Path(sys.executable).with_name("streamlit")
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(ARTIFACTS / log_name, "wb")
    proc = subprocess.Popen(
        [str(streamlit), "run", "app.py", "--server.headless", "true", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],  # others may edit sources while the tests run
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start (exit {proc.poll()}); see {ARTIFACTS / log_name}")
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def app_url() -> Iterator[str]:
    """The app served on a free port (the default workspace)."""
    with serve_app() as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    """Selenium driving headless Debian chromium (``apt-get install chromium chromium-driver``)."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        _skip_or_fail(f"browser tests need {' and '.join(missing)} (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def tiny_generator(tmp_path_factory) -> dict:
    """A tiny real generator trained on 6 half-resolution phantoms: first stopped after one step, then
    resumed to the end (so every test session also exercises resumption)."""
    from generator_fixtures import write_tiny_cohort, write_tiny_preset

    from vctcore.train.run import train

    root = tmp_path_factory.mktemp("tiny_generator")
    cohort = write_tiny_cohort(root / "cohorts" / "tiny")
    preset = write_tiny_preset(root / "tiny.yaml")
    run = root / "run"
    first = train(cohort, run, preset=preset, seed=3, max_minutes=1e-6)
    second = train(cohort, run, preset=preset, seed=3)
    return {"root": root, "cohort": cohort, "preset": preset, "run": run, "first": first, "second": second,
            "generator": second.generator_dir}


@pytest.fixture(scope="session")
def tiny_evaluation(tiny_generator, tmp_path_factory) -> dict:
    """``vct evaluate-generator`` of the tiny generator on 3 of its phantoms (an untrained small segmenter,
    4 slices per plane), run once per session into a workspace's evaluations/tiny; read by the evaluation
    suite's end-to-end test and the fidelity page tests. {"workspace", "out", "args", "proc": the finished
    process}."""
    from generator_fixtures import evaluate_args, write_untrained_segmenter

    ws = tmp_path_factory.mktemp("evaluation_ws")
    out = ws / "evaluations" / "tiny"
    args = evaluate_args(tiny_generator, write_untrained_segmenter(ws / "segmenter"), out)
    proc = subprocess.run([sys.executable, "-m", "vctcore.cli", *args], capture_output=True, text=True, timeout=900)
    return {"workspace": ws, "out": out, "args": args, "proc": proc}


@pytest.fixture(scope="session")
def tiny_world() -> dict:
    """The tiny trial world (tests/trial_fixtures.py), a fresh copy per use."""
    import copy

    from trial_fixtures import TINY_WORLD

    return copy.deepcopy(TINY_WORLD)


@pytest.fixture(scope="session")
def tiny_paper_trial(tmp_path_factory, tiny_world) -> tuple[Path, subprocess.CompletedProcess]:
    """The tiny paper trial, run once per test session: (its directory, the finished `vct trial` process)."""
    from trial_fixtures import paper_config, vct

    tmp = tmp_path_factory.mktemp("trial")
    out = tmp / "out"
    proc = vct("trial", "--config", str(paper_config(tmp, **tiny_world)), "--out", str(out), "--quiet")
    return out, proc
