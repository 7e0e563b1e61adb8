"""Organs of the digital human: lungs by lobe, mediastinum, heart, aorta, trachea, liver, spleen,
kidneys, stomach, bowel (with gas), bladder, prostate, breasts, and the named muscle groups
(autochthonous, iliopsoas, gluteal). Positions are mm in the standing frame; sizes scale with height.
"""
from __future__ import annotations

import numpy as np

from vctcore.labels import FINE_LABELS as L
from vctcore.phantom import tissues as T
from vctcore.phantom.body import Skeleton, Torso
from vctcore.phantom.shapes import Box, Ellipsoid, HalfSpace, Stroke, Subtract, Sweep
from vctcore.phantom.skeleton import rod, rot_z
from vctcore.phantom.pose import rot_x


def lungs(sk: Skeleton, torso: Torso) -> list[Stroke]:
    """Both lungs inside the thoracic cavity above the diaphragm domes, split into lobes by fissure planes."""
    h = sk.h
    cavity = torso.sweep("cavity", z_range=(0.655 * h, 0.835 * h), inset=0.004 * h, caps="round")
    _, b, yc = torso.at(0.72 * h, "cavity")
    domes = [Ellipsoid(np.array([0.045 * h, yc, 0.632 * h]), np.array([0.08, 0.07, 0.045]) * sk.r),
             Ellipsoid(np.array([-0.045 * h, yc, 0.625 * h]), np.array([0.08, 0.07, 0.042]) * sk.r)]
    # oblique fissure: from the back at T4 down to the front at the diaphragm
    z_hi, z_lo = sk.vertebra_z["T4"], 0.665 * h
    n = np.array([0.0, z_hi - z_lo, 2 * b])
    p0 = np.array([0.0, yc - b, z_hi])
    lower = HalfSpace(n, float(n @ p0))
    out: list[Stroke] = []
    for side, s in ((-1, "left"), (1, "right")):
        lung = cavity & HalfSpace(np.array([-side, 0.0, 0.0]), -0.012 * h)
        for d in domes:
            lung = Subtract(lung, d)
        upper = L[f"lung_upper_lobe_{s}"]
        out.append(Stroke(lung, T.LUNG_HU, upper))
        box = Box(*lung.bbox())
        # lobes: relabel parts of the painted lung (same tissue), no new HU
        out.append(Stroke(box & lower, None, L[f"lung_lower_lobe_{s}"], only=upper))
        if side > 0:
            horiz = HalfSpace(np.array([0.0, 0.0, 1.0]), 0.728 * h)
            out.append(Stroke(box & horiz, None, L["lung_middle_lobe_right"], only=upper))
    return out


def mediastinum(sk: Skeleton, torso: Torso) -> list[Stroke]:
    """Mediastinal soft tissue, heart, aorta (ascending, arch, descending), trachea and main bronchi."""
    h = sk.h
    _, b, yc = torso.at(0.72 * h, "cavity")
    med = Sweep(p0=np.array([0, 0, 0.675 * h]), p1=np.array([0, 0, 0.815 * h]), knots=np.array([0, 0.5, 1.0]),
                a=np.array([0.03, 0.024, 0.02]) * sk.r, b=np.array([b * 0.85, b * 0.8, b * 0.6]),
                dw=np.array([yc + 0.2 * b, yc + 0.1 * b, yc - 0.1 * b]), caps="round")
    heart_c = np.array([-0.012 * h, yc + 0.35 * b, 0.695 * h])
    heart = Ellipsoid(heart_c, np.array([0.033, 0.028, 0.032]) * sk.r, rot_z(-25.0) @ rot_x(-15.0))
    asc0 = heart_c + np.array([0.006 * h, 0.004 * h, 0.02 * h])
    arch_top = np.array([0.0, yc + 0.2 * b, 0.752 * h])
    desc0 = np.array([-0.012 * h, 0.014 * h, 0.745 * h])
    desc1 = np.array([-0.006 * h, 0.016 * h, 0.585 * h])
    r = 0.0072 * h
    out = [Stroke(med, T.SOFT_TISSUE_HU, L["soft_tissue"]), Stroke(heart, T.BLOOD_HU, L["heart"])]
    for p0, p1, rr in ((asc0, arch_top, r * 1.1), (arch_top, desc0, r), (desc0, desc1, r * 0.9)):
        out.append(Stroke(rod(p0, p1, rr), T.BLOOD_HU, L["aorta"]))
    carina = np.array([0.0, yc + 0.05 * b, 0.742 * h])
    out.append(Stroke(rod(np.array([0, 0.02 * h, 0.875 * h]), carina, 0.0075 * sk.r), T.AIR_HU, L["trachea"]))
    for side in (-1, 1):
        out.append(Stroke(rod(carina, carina + np.array([side * 0.025 * h, -0.004 * h, -0.018 * h]), 0.005 * sk.r),
                          T.AIR_HU, L["trachea"]))
    return out


def abdomen(sk: Skeleton, torso: Torso, rng: np.random.Generator, age: float) -> list[Stroke]:
    """Liver, spleen, stomach, kidneys, bowel with gas pockets, bladder and (men) prostate."""
    h = sk.h
    _, b, yc = torso.at(0.6 * h, "cavity")
    cav = torso.sweep("cavity", z_range=(0.47 * h, 0.69 * h))
    liver = Ellipsoid(np.array([0.042 * h, yc + 0.1 * b, 0.64 * h]), np.array([0.058, 0.042, 0.032]) * sk.r, rot_z(-12.0))
    spleen = Ellipsoid(np.array([-0.058 * h, yc - 0.45 * b, 0.648 * h]), np.array([0.016, 0.032, 0.028]) * sk.r, rot_z(30.0))
    stomach = Ellipsoid(np.array([-0.035 * h, yc + 0.3 * b, 0.648 * h]), np.array([0.03, 0.024, 0.03]) * sk.r, rot_z(20.0))
    bowel_c = np.array([0.0, yc + 0.25 * b, 0.565 * h])
    out: list[Stroke] = []
    for _ in range(int(rng.integers(3, 8))):  # gas in the bowel
        off = rng.uniform(-1, 1, 3) * np.array([0.045, 0.025, 0.04]) * h
        out.append(Stroke(Ellipsoid(bowel_c + off, rng.uniform(0.004, 0.009, 3) * h), T.AIR_HU, None, only=L["bowel"]))
    out += [Stroke(stomach & cav, T.STOMACH_HU, L["stomach"]),
            Stroke(Ellipsoid(stomach.center + np.array([0, 0.012 * h, 0.014 * h]), np.array([0.014, 0.01, 0.008]) * sk.r) & cav,
                   T.AIR_HU, None),
            Stroke(liver & cav, T.LIVER_HU, L["liver"]),
            Stroke(spleen & cav, T.SPLEEN_HU, L["spleen"])]
    for side, s, dz in ((-1, "left", 0.0), (1, "right", -0.008)):
        kc = np.array([side * 0.03 * h, -0.004 * h, (0.615 + dz) * h])
        out.append(Stroke(Ellipsoid(kc, np.array([0.015, 0.017, 0.031]) * sk.r, rot_z(side * 20.0)), T.KIDNEY_HU, L[f"kidney_{s}"]))
    _, bp, ycp = torso.at(0.5 * h, "cavity")
    out.append(Stroke(Ellipsoid(np.array([0.0, ycp + 0.35 * bp, 0.497 * h]), np.array([0.026, 0.021, 0.02]) * sk.r) & cav,
                      T.BLADDER_HU, L["urinary_bladder"]))
    if sk.sex == "M":
        grow = 1.0 + 0.006 * max(age - 40.0, 0.0)
        out.append(Stroke(Ellipsoid(np.array([0.0, ycp + 0.05 * bp, 0.474 * h]), np.array([0.011, 0.009, 0.011]) * sk.r * grow ** (1 / 3)),
                          T.PROSTATE_HU, L["prostate"]))
    return out


def named_muscles(sk: Skeleton, torso: Torso, muscle_hu: float) -> list[Stroke]:
    """Autochthonous back muscles, iliopsoas and gluteal muscles (both sides)."""
    h = sk.h
    out: list[Stroke] = []
    for side, s in ((-1, "left"), (1, "right")):
        z = np.array([0.56, 0.6, 0.65, 0.72, 0.8]) * h
        back = np.array([torso.at(zz, "muscle")[2] - torso.at(zz, "muscle")[1] for zz in z])
        depth = np.array([0.016, 0.02, 0.017, 0.012, 0.01]) * h
        auto = Sweep(p0=np.array([side * 0.024 * h, 0.0, z[0]]), p1=np.array([side * 0.024 * h, 0.0, z[-1]]),
                     knots=(z - z[0]) / (z[-1] - z[0]), a=np.array([0.016, 0.02, 0.018, 0.014, 0.011]) * sk.r,
                     b=depth, dw=back + depth + 0.002 * h, caps="round")
        out.append(Stroke(auto, muscle_hu, L[f"autochthon_{s}"]))
        psoas = Sweep(p0=np.array([side * 0.02 * h, 0.0, 0.655 * h]),
                      p1=np.array([side * (sk.hip_x - 0.012 * h), 0.036 * h, 0.5 * h]), knots=np.array([0, 0.5, 1.0]),
                      a=np.array([0.007, 0.016, 0.015]) * sk.r, b=np.array([0.007, 0.014, 0.012]) * sk.r, caps="round")
        out.append(Stroke(psoas, muscle_hu, L[f"iliopsoas_{s}"]))
        iliacus = Ellipsoid(np.array([side * 0.05 * h * sk.pelvis_w, 0.012 * h, 0.56 * h]), np.array([0.024, 0.01, 0.03]) * sk.r,
                            rot_z(side * 40.0))
        out.append(Stroke(iliacus, muscle_hu, L[f"iliopsoas_{s}"]))
        _, bm, ym = torso.at(0.51 * h, "muscle")
        glut = Ellipsoid(np.array([side * 0.062 * h * sk.pelvis_w, ym - bm + 0.034 * h, 0.51 * h]),
                         np.array([0.042, 0.026, 0.048]) * h, rot_z(side * 25.0))
        out.append(Stroke(glut, muscle_hu, L[f"gluteus_{s}"]))
    return out


def breasts(sk: Skeleton, torso: Torso, volume_ml: float, age: float) -> list[Stroke]:
    """Breast mounds of ``volume_ml`` each (adipose, with glandular tissue in women) on the chest wall."""
    h = sk.h
    if volume_ml <= 1.0:
        return []
    z = 0.725 * h
    a, b, yc = torso.at(z, "fat")
    r = (3.0 * volume_ml * 1000.0 / (4.0 * np.pi * 1.1 * 0.8)) ** (1.0 / 3.0)
    out: list[Stroke] = []
    for side in (-1, 1):
        x = side * 0.055 * h
        y_surf = yc + b * np.sqrt(max(1.0 - (x / a) ** 2, 0.1))
        c = np.array([x, y_surf - 0.1 * r, z])
        out.append(Stroke(Ellipsoid(c, np.array([1.1, 0.8, 1.0]) * r), T.FAT_HU, L["subcutaneous_fat"]))
        if sk.sex == "F":
            g = float(np.clip(0.45 - 0.004 * (age - 20.0), 0.15, 0.45)) ** (1 / 3)
            out.append(Stroke(Ellipsoid(c + np.array([0, 0.1 * r, 0]), np.array([1.1, 0.8, 1.0]) * r * g * 0.8),
                              T.BREAST_GLAND_HU, L["breast_gland"]))
    return out
