"""Assemble the full painting plan (ordered strokes) of one digital human.

Order matters (painter's algorithm): trunk layers, body cavity and visceral fat, organs, named
muscles, bones; then neck, head, limbs (legs, then arms). Arms are placed last so they rest against
the trunk; with ``arms="folded"`` the forearms cross the belly as in whole-body decedent CT.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vctcore.labels import FINE_LABELS as L
from vctcore.phantom import body as B
from vctcore.phantom import organs, skeleton
from vctcore.phantom import tissues as T
from vctcore.phantom.pose import Pose
from vctcore.phantom.shapes import Stroke, Sweep

_THIGH_K = np.array([0.0, 0.3, 0.7, 1.0])
_CALF_K = np.array([0.0, 0.3, 0.65, 1.0])
_UARM_K = np.array([0.0, 0.5, 1.0])
_FARM_K = np.array([0.0, 0.4, 1.0])


@dataclass
class Plan:
    """Ordered strokes, the body's x and y reach (mm, standing frame) and the torso layers."""

    strokes: list[Stroke]
    extent_x_mm: tuple[float, float]
    extent_y_mm: tuple[float, float]
    torso: B.Torso


def _limb_strokes(limb: B.Limb, muscle_hu: float) -> list[Stroke]:
    return B.layer_strokes(lambda a, b, _y: limb.make(a, b, None), limb.layers, muscle_hu=muscle_hu)


def _thigh(sk: B.Skeleton, leg, side: int, bud: B.Budget) -> B.Limb:
    h = sk.h
    top = leg.thigh(np.array([side * (sk.hip_x + 0.004 * h), 0.012 * h, 0.465 * h]))
    return B.build_limb(top, leg.thigh(leg.knee), core_r=np.array([0.011, 0.008, 0.008, 0.016]) * sk.r, knots=_THIGH_K,
                        muscle_ml=bud.muscle["thigh"], fat_ml=bud.fat["thigh"], skin_ml=bud.skin["thigh"],
                        muscle_shape=np.array([1.3, 1.2, 0.9, 0.35]), fat_shape=np.array([1.3, 1.1, 0.9, 0.6]),
                        caps="flat", flat=1.05)


def _legs(sk: B.Skeleton, pose: Pose, bud: B.Budget, hu: T.TissueHU) -> list[Stroke]:
    h = sk.h
    out: list[Stroke] = []
    for side in (-1, 1):
        leg = B.leg_transform(sk, side, pose)
        thigh = _thigh(sk, leg, side, bud)
        knee = thigh.p1
        ankle = leg.calf(leg.ankle + np.array([0, 0, 0.008 * h]))
        calf = B.build_limb(knee, ankle, core_r=np.array([0.016, 0.009, 0.0075, 0.01]) * sk.r, knots=_CALF_K,
                            muscle_ml=bud.muscle["calf"], fat_ml=bud.fat["calf"], skin_ml=bud.skin["calf"],
                            muscle_shape=np.array([0.9, 1.4, 0.9, 0.15]), fat_shape=np.array([1.0, 1.1, 0.9, 0.6]))
        out += _limb_strokes(thigh, hu.muscle) + _limb_strokes(calf, hu.muscle)
        out += _foot(leg, side, h)
        out += skeleton.leg_bones(sk, leg, side, hu)
    return out


def _foot(leg, side: int, h: float) -> list[Stroke]:
    """Foot soft tissue: sole flat at z = 0 in the standing frame, heel behind the ankle."""
    a = leg.ankle
    heel = np.array([a[0], a[1] - 0.03 * h, 0.0])
    toe = np.array([a[0] + side * 0.006 * h, a[1] + 0.112 * h, 0.0])
    k = np.array([0.0, 0.25, 0.6, 1.0])
    half_h = np.array([0.022, 0.032, 0.022, 0.009]) * h
    foot = Sweep(p0=leg.foot(heel), p1=leg.foot(toe), knots=k, a=np.array([0.017, 0.022, 0.025, 0.02]) * h,
                 b=half_h, dw=-half_h, u=np.array([1.0, 0, 0]), caps="round")
    # the Sweep's w axis is (toe - heel) x u; for a level foot that is -z, so dw=-half_h lifts the centre
    return [Stroke(foot, T.SOFT_TISSUE_HU + 5, L["soft_tissue"])]


def _arm_points(sk: B.Skeleton, torso: B.Torso, pose: Pose, side: int, radius: float,
                thigh_r: float) -> tuple[np.ndarray, ...]:
    """Shoulder, elbow, wrist and hand-tip positions (mm) of one arm clear of the trunk."""
    h = sk.h
    sh = np.array([side * sk.shoulder_x, 0.0, 0.805 * h])
    lu, lf, lh = 0.186 * h, 0.146 * h, 0.095 * h
    z_el = sh[2] - lu * 0.98
    clear = torso.at(z_el, "skin")[0] + radius + 0.004 * h
    x_el = max(abs(sh[0]), clear)
    dz = np.sqrt(max(lu**2 - (x_el - abs(sh[0])) ** 2, (0.5 * lu) ** 2))
    el = np.array([side * x_el, 0.004 * h, sh[2] - dz])
    if pose.arms == "folded":  # forearms across the belly, hands pointing to the midline
        a, b, yc = torso.at(el[2] + 0.03 * h, "skin")
        el = np.array([el[0], yc + 0.2 * b, el[2]])
        wr_x = side * 0.04 * h
        wr_y = yc + b * np.sqrt(max(1.0 - (wr_x / a) ** 2, 0.05)) + radius * 0.8
        target = np.array([wr_x, wr_y, el[2] + 0.03 * h])
        wr = el + (target - el) / np.linalg.norm(target - el) * lf
        d = np.array([-side, 0.0, 0.0])
    else:
        z_wr = el[2] - lf
        clear_w = torso.at(max(z_wr, torso.z[0]), "skin")[0] + radius * 0.8 + 0.004 * h
        if z_wr < torso.z[0] + 0.02 * h:  # beside the thighs
            clear_w = max(clear_w, sk.hip_x + thigh_r + radius + 0.004 * h)
        x_wr = max(abs(el[0]), clear_w)
        dz = np.sqrt(max(lf**2 - (x_wr - abs(el[0])) ** 2, (0.5 * lf) ** 2))
        wr = np.array([side * x_wr, 0.008 * h, el[2] - dz])
        d = (wr - el) / np.linalg.norm(wr - el)
    return sh, el, wr, wr + d * lh


def _arms(sk: B.Skeleton, torso: B.Torso, pose: Pose, bud: B.Budget,
          hu: T.TissueHU) -> tuple[list[Stroke], float, float]:
    """Arm strokes, and the largest |x| and y (mm) the arms reach."""
    h = sk.h
    out: list[Stroke] = []
    x_max = y_max = 0.0
    for side in (-1, 1):
        guess = B.build_limb([0, 0, 0], [0, 0, -0.186 * h], core_r=np.array([0.02, 0.008, 0.012]) * h, knots=_UARM_K,
                             muscle_ml=bud.muscle["upper_arm"], fat_ml=bud.fat["upper_arm"], skin_ml=bud.skin["upper_arm"],
                             muscle_shape=np.array([1.2, 1.1, 0.7]), fat_shape=np.array([1.1, 1.1, 0.8]))
        r = guess.outer_radius(1.0)
        thigh_r = _thigh(sk, B.leg_transform(sk, side, pose), side, bud).outer_radius(0.0)
        sh, el, wr, tip = _arm_points(sk, torso, pose, side, r, thigh_r)
        upper = B.build_limb(sh, el, core_r=np.array([0.02, 0.008, 0.012]) * h, knots=_UARM_K,
                             muscle_ml=bud.muscle["upper_arm"], fat_ml=bud.fat["upper_arm"], skin_ml=bud.skin["upper_arm"],
                             muscle_shape=np.array([1.2, 1.1, 0.7]), fat_shape=np.array([1.1, 1.1, 0.8]))
        fore = B.build_limb(el, wr, core_r=np.array([0.012, 0.011, 0.01]) * h, knots=_FARM_K,
                            muscle_ml=bud.muscle["forearm"], fat_ml=bud.fat["forearm"], skin_ml=bud.skin["forearm"],
                            muscle_shape=np.array([1.4, 1.0, 0.3]), fat_shape=np.array([1.1, 1.0, 0.8]), flat=1.2)
        out += _limb_strokes(upper, hu.muscle) + _limb_strokes(fore, hu.muscle)
        d = (tip - wr) / np.linalg.norm(tip - wr)
        perp = np.cross(d, [1.0, 0, 0]) if abs(d[0]) < 0.9 else np.array([0, 1.0, 0])  # palm faces the body
        hand = Sweep(p0=wr, p1=tip, knots=np.array([0.0, 0.5, 1.0]), a=np.array([0.022, 0.026, 0.02]) * h,
                     b=np.array([0.012, 0.011, 0.007]) * h, u=perp, caps="round")
        out.append(Stroke(hand, T.SOFT_TISSUE_HU + 5, L["soft_tissue"]))
        out += skeleton.arm_bones(sk, sh, el, wr, tip, side, hu)
        reach = [upper.outer_radius(0.5), upper.outer_radius(1.0), fore.outer_radius(1.0), 0.015 * h]
        x_max = max(x_max, max(abs(p[0]) + r_ for p, r_ in zip((sh, el, wr, tip), reach)))
        y_max = max(y_max, max(p[1] + r_ for p, r_ in zip((sh, el, wr, tip), reach)))
    return out, x_max, y_max


def _neck(sk: B.Skeleton, bud: B.Budget, hu: T.TissueHU) -> list[Stroke]:
    h = sk.h
    z = np.array([0.80, 0.84, 0.875, 0.9]) * h
    core_a, core_b = np.array([0.02, 0.019, 0.019, 0.02]) * sk.r, np.array([0.022, 0.021, 0.021, 0.022]) * sk.r
    layers = B.build_layers(core_a, core_b,
                            muscle_area=B.profile_areas(bud.muscle["neck"], np.array([1.2, 1.0, 1.0, 0.9]), z),
                            fat_area=B.profile_areas(bud.fat["neck"], np.ones(4), z),
                            skin_area=B.profile_areas(bud.skin["neck"], np.ones(4), z),
                            back=0.004 * h, y_core=0.006 * h)
    make = lambda a, b, y: Sweep(p0=np.array([0, 0, z[0]]), p1=np.array([0, 0, z[-1]]), knots=(z - z[0]) / (z[-1] - z[0]),  # noqa: E731
                                 a=a, b=b, dw=y, caps="round")
    out = B.layer_strokes(make, layers, muscle_hu=hu.muscle)
    out.append(Stroke(make(core_a, core_b, layers.y_core), T.SOFT_TISSUE_HU, L["soft_tissue"]))
    return out


def build_plan(attrs: dict, pose: Pose, scales: B.Scales, rng: np.random.Generator) -> Plan:
    """All strokes for one phantom; ``rng`` drives the small random details (bowel gas)."""
    h = float(attrs["height_cm"]) * 10.0
    sex = attrs["sex"]
    hu = T.TissueHU.for_patient(age_years=attrs["age_years"], bone_density_hu=attrs["bone_density_hu"])
    bud = B.make_budget(attrs, scales, muscle_hu=hu.muscle)
    sk = B.landmarks(h, sex, scales.frame)
    torso = B.build_torso(h, sex, bud, scales.frame)
    s: list[Stroke] = []
    s += B.layer_strokes(torso.make, torso.layers, muscle_hu=hu.muscle)
    s.append(Stroke(torso.sweep("cavity"), T.VISCERAL_FAT_HU, L["visceral_fat"]))
    s.append(Stroke(torso.sweep("viscera", z_range=(0.475 * h, 0.655 * h), caps="round"), T.BOWEL_HU, L["bowel"]))
    s += organs.lungs(sk, torso) + organs.mediastinum(sk, torso)
    s += organs.abdomen(sk, torso, rng, attrs["age_years"])
    s += organs.named_muscles(sk, torso, hu.muscle)
    s += organs.breasts(sk, torso, bud.fat["breast"], attrs["age_years"])
    s += _neck(sk, bud, hu)
    s += skeleton.skull(sk, hu)
    s += skeleton.spine(sk, torso, hu) + skeleton.pelvis(sk, hu) + skeleton.thorax_bones(sk, torso, hu)
    s += _legs(sk, pose, bud, hu)
    arms, x_max, y_arms = _arms(sk, torso, pose, bud, hu)
    s += arms
    sa, sb = torso.layers.skin
    y_lo = float(np.min(torso.layers.y_outer - sb))
    toe = max(B.leg_transform(sk, side, pose).foot(np.array([0.0, 0.125 * h, 0.0]))[1] for side in (-1, 1))
    y_hi = float(max(np.max(torso.layers.y_outer + sb), y_arms, toe))
    return Plan(strokes=s, extent_x_mm=(-x_max, x_max), extent_y_mm=(y_lo, y_hi), torso=torso)
