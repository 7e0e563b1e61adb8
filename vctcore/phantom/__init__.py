"""The digital-human phantom cohort: procedural, attribute-driven whole-body CT with fine labels."""
from __future__ import annotations

from vctcore.phantom.builder import (DEFAULT_GRID, SUPPORT, Phantom, PhantomGrid, build_phantom, check_attributes,
                                     supported_rows)
from vctcore.phantom.pose import Pose

__all__ = ["DEFAULT_GRID", "SUPPORT", "Phantom", "PhantomGrid", "Pose", "build_phantom", "check_attributes", "supported_rows"]
