"""Pose of a phantom lying supine on the table: knee flexion, foot plantar flexion, arm placement.

Anatomy is laid out in a *standing frame* (mm; x -> patient right, y -> anterior, z -> superior,
z = 0 at the sole of the standing foot, crown at z = height). Posing rotates the leg segments
about the hip, knee and ankle joints (rotations about the x axis); arms are placed by
``vctcore.phantom.body`` from the pose's arm mode. ``standing`` pose keeps legs straight and feet
at 90 degrees, so the head-to-heel extent equals the height.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ARM_MODES = ("sides", "folded")
POSES = ("supine", "standing")


@dataclass(frozen=True)
class Pose:
    """Joint angles in degrees; ``arms`` is one of ARM_MODES."""

    hip_flex_deg: tuple[float, float] = (0.0, 0.0)  # thigh raised anteriorly (left, right)
    foot_flex_deg: tuple[float, float] = (0.0, 0.0)  # plantar flexion from neutral (left, right)
    arms: str = "sides"

    def as_dict(self) -> dict:
        return {"hip_flex_deg": list(self.hip_flex_deg), "foot_flex_deg": list(self.foot_flex_deg),
                "arms": self.arms}


def sample_pose(mode: str, rng: np.random.Generator) -> Pose:
    """A pose for ``mode`` ("supine": random bent knees, pointed feet, arm mode; "standing": neutral)."""
    if mode not in POSES:
        raise ValueError(f"pose must be one of {', '.join(POSES)}, got {mode!r}")
    if mode == "standing":
        return Pose()
    hip = rng.uniform(0.0, 14.0, size=2)
    foot = rng.uniform(15.0, 45.0, size=2)
    arms = ARM_MODES[int(rng.integers(0, 2))]
    return Pose(hip_flex_deg=(float(hip[0]), float(hip[1])), foot_flex_deg=(float(foot[0]), float(foot[1])),
                arms=arms)


def rot_x(deg: float) -> np.ndarray:
    """Rotation about the x axis by ``deg``; positive turns -z toward +y (a downward limb swings anterior)."""
    t = np.deg2rad(deg)
    c, s = np.cos(t), np.sin(t)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


@dataclass(frozen=True)
class LegTransform:
    """Maps standing-frame points of one leg to posed positions (thigh, calf and foot segments)."""

    hip: np.ndarray
    knee: np.ndarray
    ankle: np.ndarray
    hip_flex_deg: float
    foot_flex_deg: float

    @property
    def calf_deg(self) -> float:
        """Calf tilt (deg) keeping the ankle at its standing height above the table (heel on the table)."""
        thigh = np.linalg.norm(self.knee - self.hip)
        calf = np.linalg.norm(self.ankle - self.knee)
        s = np.clip(np.sin(np.deg2rad(self.hip_flex_deg)) * thigh / calf, -1.0, 1.0)
        return float(np.rad2deg(np.arcsin(s)))

    def thigh(self, p: np.ndarray) -> np.ndarray:
        return self.hip + rot_x(self.hip_flex_deg) @ (np.asarray(p, float) - self.hip)

    def _knee_posed(self) -> np.ndarray:
        return self.thigh(self.knee)

    def calf(self, p: np.ndarray) -> np.ndarray:
        return self._knee_posed() + rot_x(-self.calf_deg) @ (np.asarray(p, float) - self.knee)

    def foot(self, p: np.ndarray) -> np.ndarray:
        ankle = self.calf(self.ankle)
        return ankle + rot_x(-self.calf_deg - self.foot_flex_deg) @ (np.asarray(p, float) - self.ankle)
