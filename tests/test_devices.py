"""Device selection and the device description that provenance and timings record."""
from __future__ import annotations

import pytest
import torch

from vctcore.devices import cpu_model, describe_device, resolve_device


def test_cpu_model_reads_the_kernels_model_name(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14\nflags\t\t: avx512f\n")
    assert cpu_model(info) == "AMD EPYC 9R14"
    assert isinstance(cpu_model(tmp_path / "absent"), str)  # unreadable: falls back, no error


def test_cpu_description_names_threads_instructions_and_bf16():
    text = describe_device(torch.device("cpu"))
    assert text.startswith("cpu: ") and f"{torch.get_num_threads()} threads" in text
    assert torch.backends.cpu.get_cpu_capability() in text and "bf16" in text


def test_resolve_device_refuses_unknown_names_and_absent_cuda():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="must be one of"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
