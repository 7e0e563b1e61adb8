"""Body layout of the digital human: proportions, tissue budgets and soft-tissue layers.

All lengths are mm in the standing frame of ``vctcore.phantom.pose`` (x -> right, y -> anterior,
z -> superior, sole at z = 0). Segment heights follow the anthropometric proportions of Drillis &
Contini (1966) as fractions of body height H (knee 0.285 H, hip 0.53 H, shoulder 0.818 H, ...).
Skeletal muscle is shared between body regions after Janssen et al. (2000, whole-body MRI: legs
about half of all skeletal muscle), subcutaneous fat after typical android (male) and gynoid (female)
patterns, visceral fat as a sex- and age-dependent share of total fat.

Soft tissue is built as nested elliptic layers around a core (bones, or the body cavity in the
trunk): muscle, then subcutaneous fat, then skin/fascia ("soft_tissue"). Each layer's
cross-sectional area along a segment is its region's volume budget times a shape profile, and the
radii follow from the area by solving the ring equation exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vctcore.labels import FINE_LABELS as L
from vctcore.phantom import tissues as T
from vctcore.phantom.pose import LegTransform, Pose
from vctcore.phantom.shapes import Stroke, Sweep

#: torso knots (fraction of height): crotch ... base of the neck
TORSO_Z = np.array([0.465, 0.49, 0.52, 0.56, 0.60, 0.64, 0.67, 0.71, 0.75, 0.79, 0.815, 0.83])
#: body-cavity half-width / half-depth (fraction of H) of a lean adult man; women scaled below
_CAV_A = np.array([0.042, 0.050, 0.056, 0.060, 0.060, 0.066, 0.078, 0.086, 0.082, 0.068, 0.045, 0.030])
_CAV_B = np.array([0.027, 0.032, 0.036, 0.038, 0.038, 0.042, 0.050, 0.056, 0.052, 0.042, 0.030, 0.022])
#: extra posterior wall (fraction of H) holding the back muscles and buttocks
_BACK = np.array([0.030, 0.032, 0.030, 0.024, 0.020, 0.018, 0.016, 0.014, 0.014, 0.014, 0.010, 0.006])
#: visceral-fat area profile over the torso knots (abdomen and pelvis)
_VF_SHAPE = np.array([0.0, 0.25, 0.55, 0.9, 1.0, 1.0, 0.55, 0.0, 0.0, 0.0, 0.0, 0.0])
_TORSO_MUSCLE = np.array([1.5, 1.7, 1.6, 1.0, 0.85, 0.85, 0.9, 1.0, 1.15, 1.3, 0.7, 0.3])
_TORSO_FAT = {
    "M": np.array([0.7, 0.8, 0.9, 1.2, 1.5, 1.5, 1.2, 0.9, 0.8, 0.7, 0.5, 0.3]),
    "F": np.array([1.3, 1.5, 1.5, 1.3, 1.2, 1.1, 0.9, 0.8, 0.8, 0.7, 0.5, 0.3]),
}

#: share of all skeletal muscle per region (one side for paired regions)
MUSCLE_SHARE = {
    "M": {"torso": 0.26, "neck": 0.02, "thigh": 0.18, "calf": 0.07, "upper_arm": 0.055, "forearm": 0.035},
    "F": {"torso": 0.27, "neck": 0.02, "thigh": 0.195, "calf": 0.075, "upper_arm": 0.045, "forearm": 0.03},
}
#: share of subcutaneous fat per region (one side for paired regions); breasts separate
FAT_SHARE = {
    "M": {"torso": 0.52, "neck": 0.04, "thigh": 0.12, "calf": 0.035, "upper_arm": 0.04, "forearm": 0.02,
          "breast": 0.01},
    "F": {"torso": 0.36, "neck": 0.03, "thigh": 0.16, "calf": 0.045, "upper_arm": 0.05, "forearm": 0.02,
          "breast": 0.03},
}
SKIN_SHARE = {"torso": 0.46, "neck": 0.05, "thigh": 0.09, "calf": 0.06, "upper_arm": 0.05, "forearm": 0.04}
_PAIRED = ("thigh", "calf", "upper_arm", "forearm", "breast")


def visceral_share(sex: str, age_years: float) -> float:
    """Visceral share of all adipose tissue (men more, rising with age)."""
    base, slope = (0.13, 0.0025) if sex == "M" else (0.06, 0.0018)
    return float(np.clip(base + slope * (age_years - 40.0), 0.03, 0.3))


def ring_thickness(a: np.ndarray, b: np.ndarray, area: np.ndarray, back: np.ndarray | float = 0.0) -> np.ndarray:
    """Uniform thickness t (mm) so that the ring around ellipse (a, b) has ``area`` (mm^2).

    ``back`` adds an extra posterior depth: outer ellipse (a + t, b + back + t) with its centre
    shifted posteriorly by ``back``. Solves (a + t)(b + back + t) - a b = area / pi exactly.
    """
    a, b, area = np.asarray(a, float), np.asarray(b, float), np.maximum(np.asarray(area, float), 0.0)
    s = a + b + back
    c = a * back - area / np.pi
    t = (-s + np.sqrt(np.maximum(s * s - 4.0 * c, 0.0))) / 2.0
    return np.maximum(t, 1.0)


def profile_areas(volume_ml: float, shape: np.ndarray, z_mm: np.ndarray) -> np.ndarray:
    """Cross-sectional areas (mm^2) at ``z_mm`` following ``shape`` whose integral is ``volume_ml``."""
    integral = float(np.trapezoid(shape, z_mm))
    if integral <= 0:
        return np.zeros_like(z_mm)
    return shape * (volume_ml * 1000.0 / integral)


@dataclass
class Layers:
    """Nested ellipse radii (mm) at knots: core, muscle, fat, skin; y offsets (mm) of their centres."""

    core: tuple[np.ndarray, np.ndarray]
    muscle: tuple[np.ndarray, np.ndarray]
    fat: tuple[np.ndarray, np.ndarray]
    skin: tuple[np.ndarray, np.ndarray]
    y_core: np.ndarray
    y_outer: np.ndarray


def build_layers(core_a, core_b, *, muscle_area, fat_area, skin_area, back=0.0, y_core=0.0) -> Layers:
    """Stack muscle, fat and skin rings of the given areas (mm^2) around a core ellipse."""
    core_a, core_b = np.asarray(core_a, float), np.asarray(core_b, float)
    back = np.broadcast_to(np.asarray(back, float), core_a.shape)
    # the posterior shift may hold at most 60% of the muscle ring
    back = np.minimum(back, 0.6 * np.asarray(muscle_area, float) / (np.pi * core_a))
    t_m = ring_thickness(core_a, core_b, muscle_area, back)
    ma, mb = core_a + t_m, core_b + back + t_m
    t_f = ring_thickness(ma, mb, fat_area)
    fa, fb = ma + t_f, mb + t_f
    t_s = ring_thickness(fa, fb, skin_area)
    y_core = np.broadcast_to(np.asarray(y_core, float), core_a.shape)
    return Layers(core=(core_a, core_b), muscle=(ma, mb), fat=(fa, fb), skin=(fa + t_s, fb + t_s),
                  y_core=y_core, y_outer=y_core - back)


@dataclass
class Budget:
    """Tissue volumes (mL) to lay out, per region (paired regions: per side)."""

    muscle: dict[str, float]
    fat: dict[str, float]
    skin: dict[str, float]
    visceral_ml: float


@dataclass
class Scales:
    """Calibration knobs: multipliers of the fat and muscle budgets and the skin/fascia volume (mL)."""

    fat: float = 1.0
    muscle: float = 1.0
    skin_ml: float | None = None
    frame: float = 1.0


def make_budget(attrs: dict, scales: Scales, *, muscle_hu: float) -> Budget:
    """Volumes (mL) from weight (kg), BFP and MMP (%) and the calibration scales."""
    sex, w = attrs["sex"], float(attrs["weight_kg"])
    fat_ml = w * attrs["bfp_pct"] / 100.0 * 1000.0 / T.density_g_ml(T.FAT_HU) * scales.fat
    muscle_ml = w * attrs["mmp_pct"] / 100.0 * 1000.0 / T.density_g_ml(muscle_hu) * scales.muscle
    v_share = visceral_share(sex, attrs["age_years"])
    skin_ml = scales.skin_ml if scales.skin_ml is not None else 0.05 * w * 1000.0
    sub = fat_ml * (1.0 - v_share)
    return Budget(
        muscle={k: muscle_ml * v for k, v in MUSCLE_SHARE[sex].items()},
        fat={k: sub * v / sum(FAT_SHARE[sex].values()) for k, v in FAT_SHARE[sex].items()},
        skin={k: skin_ml * v for k, v in SKIN_SHARE.items()},
        visceral_ml=fat_ml * v_share,
    )


@dataclass
class Torso:
    """Torso cross-sections at ``z`` (mm): body cavity and the nested layers around it."""

    z: np.ndarray
    cavity: tuple[np.ndarray, np.ndarray]
    y_cavity: np.ndarray
    layers: Layers
    viscera: tuple[np.ndarray, np.ndarray]  # lean cavity inside the visceral-fat ring (bowel and organs)

    def _layer(self, which: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if which == "cavity":
            return self.cavity[0], self.cavity[1], self.y_cavity
        if which == "viscera":
            return self.viscera[0], self.viscera[1], self.y_cavity
        a, b = getattr(self.layers, which)
        return a, b, self.layers.y_outer

    def at(self, z: float, which: str = "skin") -> tuple[float, float, float]:
        """(half-width, half-depth, centre y) in mm of a layer ("cavity", "muscle", "fat", "skin") at z."""
        a, b, yc = self._layer(which)
        return float(np.interp(z, self.z, a)), float(np.interp(z, self.z, b)), float(np.interp(z, self.z, yc))

    def sweep(self, which: str, z_range: tuple[float, float] | None = None, inset: float = 0.0,
              caps: str = "flat") -> Sweep:
        """The layer as a vertical Sweep, optionally limited to ``z_range`` and shrunk by ``inset`` mm."""
        a, b, yc = self._layer(which)
        z = self.z
        if z_range is not None:
            zz = np.unique(np.concatenate([[z_range[0], z_range[1]],
                                           z[(z > z_range[0]) & (z < z_range[1])]]))
            a, b, yc = (np.interp(zz, z, v) for v in (a, b, yc))
            z = zz
        return self.make(np.maximum(a - inset, 1.0), np.maximum(b - inset, 1.0), yc, z=z, caps=caps)

    def make(self, a: np.ndarray, b: np.ndarray, yc: np.ndarray, *, z: np.ndarray | None = None,
             caps: str = "flat") -> Sweep:
        """Vertical Sweep with half-width ``a``, half-depth ``b`` and centre ``yc`` (mm) at heights ``z``."""
        z = self.z if z is None else z
        z0, z1 = float(z[0]), float(z[-1])
        return Sweep(p0=np.array([0.0, 0.0, z0]), p1=np.array([0.0, 0.0, z1]), knots=(z - z0) / (z1 - z0),
                     a=a, b=b, dw=yc, caps=caps)


def build_torso(h: float, sex: str, budget: Budget, frame: float = 1.0) -> Torso:
    """Torso layers for height ``h`` (mm) from the region budgets."""
    z = TORSO_Z * h
    wa = np.where(TORSO_Z < 0.6, 1.07, 0.93) if sex == "F" else np.ones_like(TORSO_Z)
    wb = np.where(TORSO_Z < 0.6, 1.03, 0.95) if sex == "F" else np.ones_like(TORSO_Z)
    ca, cb = _CAV_A * h * wa, _CAV_B * h * wb
    abd = TORSO_Z < 0.66  # the abdominal cavity follows the organ frame, the rib cage the height
    ca, cb = np.where(abd, ca * frame, ca), np.where(abd, cb * frame, cb)
    vf_area = profile_areas(budget.visceral_ml, _VF_SHAPE, z)
    viscera = (ca, cb)
    t_vf = ring_thickness(ca, cb, vf_area)
    ca, cb = ca + t_vf, cb + t_vf
    # the cavity's posterior edge sits just behind the vertebral bodies (spine at y = 0)
    y_cav = cb - 0.012 * h
    back = _BACK * h
    layers = build_layers(
        ca, cb,
        muscle_area=profile_areas(budget.muscle["torso"], _TORSO_MUSCLE, z),
        fat_area=profile_areas(budget.fat["torso"], _TORSO_FAT[sex], z),
        skin_area=profile_areas(budget.skin["torso"], np.ones_like(z), z),
        back=back, y_core=y_cav,
    )
    return Torso(z=z, cavity=(ca, cb), y_cavity=y_cav, layers=layers, viscera=viscera)


def layer_strokes(make, layers: Layers, *, muscle_hu: float) -> list[Stroke]:
    """Skin, fat and muscle strokes (outermost first); ``make(a, b, y_centre)`` builds the Sweep."""
    return [
        Stroke(make(*layers.skin, layers.y_outer), T.SOFT_TISSUE_HU, L["soft_tissue"]),
        Stroke(make(*layers.fat, layers.y_outer), T.FAT_HU, L["subcutaneous_fat"]),
        Stroke(make(*layers.muscle, layers.y_outer), muscle_hu, L["skeletal_muscle"]),
    ]


@dataclass
class Limb:
    """A limb segment: axis end points (posed, mm), knots and layers."""

    p0: np.ndarray
    p1: np.ndarray
    knots: np.ndarray
    layers: Layers
    caps: str = "round"

    def make(self, a, b, dw) -> Sweep:
        return Sweep(p0=self.p0, p1=self.p1, knots=self.knots, a=a, b=b, dw=None, caps=self.caps)

    def outer_radius(self, t: float) -> float:
        sa, sb = self.layers.skin
        return float(max(np.interp(t, self.knots, sa), np.interp(t, self.knots, sb)))


def build_limb(p0, p1, *, core_r: np.ndarray, knots: np.ndarray, muscle_ml: float, fat_ml: float,
               skin_ml: float, muscle_shape: np.ndarray, fat_shape: np.ndarray, caps: str = "round",
               flat: float = 1.0) -> Limb:
    """Layers of a limb segment between posed points p0 and p1 (mm) around a bony core of radius core_r."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    length = float(np.linalg.norm(p1 - p0))
    s = knots * length
    layers = build_layers(
        core_r * flat, core_r / flat,
        muscle_area=profile_areas(muscle_ml, muscle_shape, s),
        fat_area=profile_areas(fat_ml, fat_shape, s),
        skin_area=profile_areas(skin_ml, np.ones_like(s), s),
    )
    return Limb(p0=p0, p1=p1, knots=knots, layers=layers, caps=caps)


@dataclass
class Skeleton:
    """Standing-frame landmarks (mm) derived from height and sex."""

    h: float
    sex: str
    hip_x: float
    knee_x: float
    ankle_x: float
    shoulder_x: float
    pelvis_w: float
    vertebra_z: dict[str, float] = field(default_factory=dict)
    frame: float = 1.0  # cross-section scale of bones and organs (lighter frames in women, calibrated)

    @property
    def r(self) -> float:
        """Length unit (mm) for bone and organ radii: height times the frame factor."""
        return self.h * self.frame


def landmarks(h: float, sex: str, frame: float = 1.0) -> Skeleton:
    """Joint positions from height (Drillis & Contini proportions) and sex (pelvis/shoulder breadth)."""
    pelvis_w = 1.08 if sex == "F" else 1.0
    shoulder = 0.100 if sex == "F" else 0.108
    vz: dict[str, float] = {}
    for i in range(1, 8):
        vz[f"C{i}"] = (0.905 - (i - 1) * 0.0125) * h
    for i in range(1, 13):
        vz[f"T{i}"] = (0.815 - (i - 1) * 0.01455) * h
    for i in range(1, 6):
        vz[f"L{i}"] = (0.633 - (i - 1) * 0.021) * h
    return Skeleton(h=h, sex=sex, hip_x=0.082 * h * pelvis_w, knee_x=0.052 * h, ankle_x=0.05 * h,
                    shoulder_x=shoulder * h, pelvis_w=pelvis_w, vertebra_z=vz, frame=frame)


def leg_transform(sk: Skeleton, side: int, pose: Pose) -> LegTransform:
    """Pose transform of the left (side=-1) or right (side=+1) leg."""
    h = sk.h
    i = 0 if side < 0 else 1
    return LegTransform(
        hip=np.array([side * sk.hip_x, 0.02 * h, 0.515 * h]),
        knee=np.array([side * sk.knee_x, 0.01 * h, 0.285 * h]),
        ankle=np.array([side * sk.ankle_x, 0.0, 0.039 * h]),
        hip_flex_deg=pose.hip_flex_deg[i],
        foot_flex_deg=pose.foot_flex_deg[i],
    )
