"""Device selection: "auto" picks CUDA when present, else CPU."""
from __future__ import annotations

import torch

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
