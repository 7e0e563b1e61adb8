"""One provenance record for every artifact (vctcore.provenance), readers that still read the files shipped
before it, and one JSON cleaner (vctcore.jsonsafe)."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from vctcore import assets
from vctcore.jsonsafe import json_safe
from vctcore.provenance import machine, package_versions, provenance, read_versions, utc_now

UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
KEYS = {"created_utc", "versions", "machine"}


def test_the_record_has_the_same_keys_everywhere():
    rec = provenance()
    assert set(rec) == KEYS and UTC.match(rec["created_utc"]) and UTC.match(utc_now())
    assert {"vctcore", "python", "numpy", "pandas", "torch", "monai"} <= set(rec["versions"])
    assert set(machine()) == {"platform", "cpu", "cores", "python"} == set(rec["machine"])
    full = provenance(seeds={"generator": 0}, config={"n": 2}, inputs={"attributes.csv": "ab" * 32})
    assert set(full) == KEYS | {"seeds", "config", "inputs_sha256"} and full["seeds"] == {"generator": 0}
    package_versions()["numpy"] = "changed"  # a copy: the cached lookup stays right
    assert package_versions()["numpy"] == np.__version__


def test_recording_versions_imports_nothing_heavy():
    code = "import sys; from vctcore.provenance import provenance; provenance(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_cohort_json_carries_the_record(tmp_path):
    from vctcore.cohort import CohortWriter, read_provenance

    CohortWriter(tmp_path, {"maker": "test", "seed": 3})
    prov = read_provenance(tmp_path)
    assert KEYS <= set(prov) and prov["seed"] == 3 and prov["maker"] == "test"


def test_versions_are_read_from_the_files_shipped_before_the_record():
    manifest = json.loads((assets.shipped_generator() / "manifest.json").read_text())
    assert read_versions(manifest["training"])["numpy"]  # package_versions, written by the training code
    seg = json.loads((assets.segmenter_dir() / "manifest.json").read_text())
    assert read_versions(seg)["vctcore"] == "0.1.0"
    card = yaml.safe_load((assets.downstream_dir() / "bfp_reference" / "card.yaml").read_text())
    assert read_versions(card["training_data"])["monai"]
    height = json.loads(assets.package_file("measure/height_calibration.json").read_text())
    assert read_versions(height["provenance"]) == {"vctcore": "0.1.0"}  # vctcore_version alone
    assert read_versions({}) == {}


def test_the_fidelity_page_reads_the_shipped_evaluation_and_metrics():
    from vctcore.fidelity.summary import provenance as fidelity_provenance
    from vctcore.report.source import generator_card

    report = json.loads((assets.shipped_generator() / "fidelity" / "fidelity.json").read_text())
    prov = fidelity_provenance(report)
    assert prov["created_utc"] and prov["versions"]["vctcore"] == "0.1.0"
    files = json.loads((assets.shipped_generator() / "manifest.json").read_text())["files"]
    card = generator_card({"path": str(assets.shipped_generator()), "sha256": files})
    assert card.default_world and card.metrics["fidelity.joint_seg_dice"]["value"] is not None


def test_json_safe_is_the_one_cleaner():
    data = {1: (np.float32(1.5), np.int64(2), np.bool_(True)), "nan": math.nan, "inf": np.float64("inf"),
            "path": Path("/a/b"), "nested": [{"x": None}], "s": "text", "one": np.array([3])}
    out = json_safe(data)
    assert out == {"1": [1.5, 2, True], "nan": None, "inf": None, "path": "/a/b", "nested": [{"x": None}],
                   "s": "text", "one": 3}
    assert json.dumps(out, allow_nan=False)
    assert type(out["1"][1]) is int and type(out["1"][2]) is bool
