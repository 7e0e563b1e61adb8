"""vctcore: the science behind the vct virtual-clinical-trials workbench (no UI code here)."""
from __future__ import annotations

__version__ = "0.1.0"
