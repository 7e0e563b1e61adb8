"""Device selection: "auto" picks CUDA when present, else CPU."""
from __future__ import annotations

import torch

from vctcore.provenance import cpu_model  # noqa: F401  (describe_device uses it; tests and bench import it here)

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str = "auto") -> torch.device:
    """A torch device for "auto", "cpu", "cuda" or "cuda:N"; ValueError if CUDA is asked for but absent."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but this machine has no CUDA GPU (use cpu or auto)")
        return torch.device(device)
    if device == "cpu":
        return torch.device("cpu")
    raise ValueError(f"device must be one of {', '.join(DEVICES)} or cuda:N, got {device!r}")


def bf16_autocast_supported(device: torch.device) -> bool:
    """True where bf16 autocast is fast: CUDA, or a CPU with native bf16 (AVX512-BF16 / AMX)."""
    if device.type == "cuda":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast(device: torch.device, precision: str):
    """bf16 autocast on ``device`` when ``precision == "bf16"`` and the hardware supports it; else a no-op."""
    enabled = precision == "bf16" and bf16_autocast_supported(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def describe_device(device: torch.device) -> str:
    """What ran a job, for provenance and timings: the GPU's name, or the CPU's model, torch threads, the
    vector instructions torch uses and whether bf16 autocast is native (CPU step rates differ between CPUs
    with and without AMX)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    bf16 = "native bf16" if bf16_autocast_supported(device) else "no native bf16"
    return (f"cpu: {cpu_model() or 'unknown model'}, {torch.get_num_threads()} threads, "
            f"{torch.backends.cpu.get_cpu_capability()}, {bf16}")
