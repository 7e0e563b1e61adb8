"""DistributedDataParallel training through torchrun (2 CPU processes, gloo backend) on the tiny preset."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_torchrun_two_processes_train_and_export(tiny_generator, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    run = tmp_path / "ddp_run"
    res = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "vctcore.cli", "train",
         "--cohort", str(tiny_generator["cohort"]), "--run-dir", str(run), "--preset", str(tiny_generator["preset"]),
         "--device", "cpu", "--threads", "1", "--quiet"],
        capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    manifest = json.loads((run / "generator" / "manifest.json").read_text())
    assert manifest["training"]["stages"]["diffusion"]["steps"] == 6
    # only rank 0 writes logs: one header and one row per step
    lines = (run / "logs" / "seg_ae.csv").read_text().strip().splitlines()
    assert len(lines) == 1 + 4
