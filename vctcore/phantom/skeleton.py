"""Bones of the digital human: spine (C1..L5, sacrum), skull, ribs, sternum, shoulder girdle,
pelvis halves, and the long bones of arms and legs, each a cortical shell around trabecular bone or
marrow. Positions are mm in the standing frame (see ``vctcore.phantom.pose``); leg bones are posed
through a ``LegTransform``. Vertebral trabecular bone carries the patient's ``bone_density_hu``.
"""
from __future__ import annotations

import numpy as np

from vctcore.labels import FINE_LABELS as L
from vctcore.phantom import tissues as T
from vctcore.phantom.body import Skeleton, Torso
from vctcore.phantom.pose import LegTransform, rot_x
from vctcore.phantom.shapes import Ellipsoid, HalfSpace, Shape, Stroke, Subtract, Sweep


def rot_z(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def bone(shape: Shape, inner: Shape | None, label: str, *, cortical: float, core: float) -> list[Stroke]:
    """A bone: ``shape`` filled with cortical HU, then its ``inner`` part with trabecular/marrow HU."""
    out = [Stroke(shape, cortical, L[label])]
    if inner is not None:
        out.append(Stroke(inner, core, None))
    return out


def rod(p0, p1, r0: float, r1: float | None = None, caps: str = "round") -> Sweep:
    r1 = r0 if r1 is None else r1
    return Sweep(p0=np.asarray(p0, float), p1=np.asarray(p1, float), knots=np.array([0.0, 1.0]),
                 a=np.array([r0, r1]), b=np.array([r0, r1]), caps=caps)


def long_bone(p0, p1, r: float, label: str, *, ends: tuple[float, float], hu) -> list[Stroke]:
    """Shaft from p0 to p1 (radius r, mm) with epiphyses of radii ``ends``; marrow inside the shaft."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    out = bone(rod(p0, p1, r), rod(p0, p1, max(r - 3.5, 1.0)), label, cortical=T.CORTICAL_HU, core=T.MARROW_HU)
    for p, re in ((p0, ends[0]), (p1, ends[1])):
        if re > 0:
            out += bone(Ellipsoid(p, np.full(3, re)), Ellipsoid(p, np.full(3, re - 2.0)), label,
                        cortical=hu.trabecular + 350.0, core=hu.trabecular)
    return out


def spine(sk: Skeleton, torso: Torso, hu) -> list[Stroke]:
    """Intervertebral column, vertebrae C1..L5 (body, arch, spinous process), spinal canal, sacrum."""
    h = sk.h
    vz = sk.vertebra_z
    strokes = [Stroke(rod([0, 0, 0.54 * h], [0, 0.004 * h, 0.885 * h], 0.011 * h), T.DISC_HU, L["soft_tissue"])]
    for name, z in vz.items():
        level = name[0]
        size = {"C": (0.0095, 0.0072, 0.0050), "T": (0.0130, 0.0100, 0.0062), "L": (0.0150, 0.0105, 0.0085)}[level]
        a, b, c = (v * h for v in size)
        if name == "T1":
            a, b = a * 0.85, b * 0.85
        y = 0.004 * h if level == "C" else 0.0
        label = f"vertebrae_{name}"
        body_shape = Sweep(p0=np.array([0, y, z - c]), p1=np.array([0, y, z + c]), knots=np.array([0.0, 1.0]),
                           a=np.array([a, a]), b=np.array([b, b]))
        inner = Sweep(p0=np.array([0, y, z - c + 2]), p1=np.array([0, y, z + c - 2]), knots=np.array([0.0, 1.0]),
                      a=np.array([a - 2.5, a - 2.5]), b=np.array([b - 2.5, b - 2.5]))
        if name != "C1":  # the atlas has no body
            strokes += bone(body_shape, inner, label, cortical=T.CORTICAL_HU * 0.7, core=hu.trabecular)
        if name == "C2":  # dens reaching up into the atlas ring
            strokes += bone(rod([0, y, z], [0, y, vz["C1"] + 0.3 * c], 0.0045 * sk.r), None, label,
                            cortical=hu.trabecular + 300, core=0)
        # neural arch: ring around the canal, then spinous and transverse processes
        canal_r = 0.0075 * h if level == "C" else 0.0065 * h
        yc = y - b - canal_r * 0.9
        ring = Subtract(Ellipsoid(np.array([0, yc, z]), np.array([canal_r * 1.9, canal_r * 1.5, c * 0.9])),
                        Ellipsoid(np.array([0, yc, z]), np.array([canal_r, canal_r, c * 3])))
        strokes.append(Stroke(ring, hu.trabecular + 250, L[label]))
        sp_len = {"C": 0.012, "T": 0.022, "L": 0.02}[level] * h
        strokes.append(Stroke(rod([0, yc - canal_r, z], [0, yc - canal_r - sp_len, z - (0.4 if level == "T" else 0.1) * sp_len],
                                  0.0035 * h), hu.trabecular + 300, L[label]))
        tp = {"C": 0.022, "T": 0.028, "L": 0.04}[level] * h
        strokes.append(Stroke(rod([-tp, yc + 0.2 * canal_r, z], [tp, yc + 0.2 * canal_r, z], 0.003 * sk.r, caps="round"),
                              hu.trabecular + 250, L[label]))
        strokes.append(Stroke(Ellipsoid(np.array([0, yc, z]), np.array([canal_r, canal_r, c * 1.6])), T.CSF_HU,
                              L["spinal_canal"]))
    # sacrum: wedge tilted backwards from the L5/S1 disc to the coccyx
    top = np.array([0.0, -0.004 * h, 0.535 * h])
    bot = np.array([0.0, -0.035 * h, 0.472 * h])
    sac = Sweep(p0=top, p1=bot, knots=np.array([0.0, 1.0]), a=np.array([0.05 * h, 0.012 * h]),
                b=np.array([0.014 * h, 0.008 * h]), caps="round", u=np.array([1.0, 0, 0]))
    sac_in = Sweep(p0=top, p1=bot, knots=np.array([0.0, 1.0]), a=np.array([0.05 * h - 3, 0.012 * h - 3]),
                   b=np.array([0.014 * h - 3, 0.008 * h - 3]), caps="round")
    strokes += bone(sac, sac_in, "sacrum", cortical=hu.trabecular + 400, core=hu.trabecular * 0.9)
    return strokes


def pelvis(sk: Skeleton, hu) -> list[Stroke]:
    """Hip bones (ilium wing, acetabulum, pubic and ischial rami); women wider with a rounder inlet."""
    h, w = sk.h, sk.pelvis_w
    out: list[Stroke] = []
    for side, name in ((-1, "hip_left"), (1, "hip_right")):
        wing_c = np.array([side * 0.058 * h * w, -0.004 * h, 0.575 * h])
        rot = rot_z(side * (40.0 if sk.sex == "M" else 48.0))
        wing = Ellipsoid(wing_c, np.array([0.042 * h * w, 0.0075 * h, 0.038 * h]), rot)
        out += bone(wing, Ellipsoid(wing_c, np.array([0.042 * h * w - 3, 0.0075 * h - 3, 0.038 * h - 3]), rot),
                    name, cortical=hu.trabecular + 500, core=hu.trabecular)
        acet = np.array([side * (sk.hip_x + 0.004 * h), 0.02 * h, 0.515 * h])
        out += bone(Ellipsoid(acet, np.array([0.021, 0.024, 0.026]) * sk.r),
                    Ellipsoid(acet, np.array([0.021, 0.024, 0.026]) * sk.r - 3), name,
                    cortical=hu.trabecular + 500, core=hu.trabecular)
        sym = np.array([side * 0.006 * h * w, 0.048 * h, 0.492 * h])
        out.append(Stroke(rod(acet + [-side * 0.01 * h, 0.012 * h, -0.008 * h], sym, 0.0075 * sk.r), hu.trabecular + 450, L[name]))
        tub = np.array([side * 0.05 * h * w, -0.004 * h, 0.468 * h])
        out.append(Stroke(rod(acet + [-side * 0.006 * h, -0.01 * h, -0.012 * h], tub, 0.0095 * sk.r), hu.trabecular + 450, L[name]))
        out.append(Stroke(rod(tub, sym + [0, -0.012 * h, -0.012 * h], 0.0055 * sk.r), hu.trabecular + 450, L[name]))
    return out


def thorax_bones(sk: Skeleton, torso: Torso, hu) -> list[Stroke]:
    """Ribs 1..12 around the cavity (anterior ends lower), sternum, clavicles and scapulae."""
    h = sk.h
    out: list[Stroke] = []
    for i in range(1, 13):
        z = sk.vertebra_z[f"T{i}"]
        a, b, yc = torso.at(z, "cavity")
        a, b = a + 0.004 * h, b + 0.004 * h
        slope = 0.55 if i < 11 else 0.3  # mm of drop per mm toward anterior
        ring = _RibRing(z, yc, a, b, slope, tube=0.0038 * h)
        if i >= 11:  # floating ribs: posterior half only
            ring = ring & HalfSpace(np.array([0, 1.0, 0]), yc)
        else:  # costal cartilage gap before the sternum
            ring = ring - Ellipsoid(np.array([0, yc + b, z - slope * b]), np.array([0.03 * h, 0.03 * h, 0.05 * h]))
        out.append(Stroke(ring, hu.rib, L["ribs"]))
    a, b, yc = torso.at(0.76 * h, "cavity")
    top = np.array([0.0, yc + b + 0.006 * h, 0.812 * h])
    bot = np.array([0.0, yc + torso.at(0.71 * h, "cavity")[1] + 0.008 * h, 0.705 * h])
    stern = Sweep(p0=top, p1=bot, knots=np.array([0.0, 0.2, 1.0]), a=np.array([0.02, 0.014, 0.01]) * sk.r,
                  b=np.array([0.0065, 0.005, 0.004]) * sk.r, caps="round")
    out.append(Stroke(stern, hu.trabecular + 250, L["sternum"]))
    for side, cl, sc in ((-1, "clavicula_left", "scapula_left"), (1, "clavicula_right", "scapula_right")):
        med = np.array([side * 0.014 * h, top[1] - 0.004 * h, 0.815 * h])
        lat = np.array([side * (sk.shoulder_x + 0.006 * h), -0.004 * h, 0.822 * h])
        mid = (med + lat) / 2 + np.array([0, 0.012 * h, 0.004 * h])
        out.append(Stroke(rod(med, mid, 0.0048 * sk.r), T.CORTICAL_HU * 0.8, L[cl]))
        out.append(Stroke(rod(mid, lat, 0.0045 * sk.r), T.CORTICAL_HU * 0.8, L[cl]))
        _, bb, ycc = torso.at(0.765 * h, "cavity")
        sc_c = np.array([side * 0.075 * h, ycc - bb - 0.012 * h, 0.768 * h])
        out.append(Stroke(Ellipsoid(sc_c, np.array([0.038 * h, 0.0045 * h, 0.058 * h]), rot_z(side * 22.0)),
                          hu.trabecular + 450, L[sc]))
        glen = np.array([side * (sk.shoulder_x - 0.016 * h), -0.002 * h, 0.805 * h])
        out.append(Stroke(rod(sc_c + [side * 0.02 * h, 0.004 * h, 0.02 * h], glen, 0.007 * sk.r), hu.trabecular + 450, L[sc]))
    return out


class _RibRing(Shape):
    """A rib: tube of radius ``tube`` along an ellipse (a, b) around (0, yc) in a plane tilted by ``slope``."""

    def __init__(self, z: float, yc: float, a: float, b: float, slope: float, tube: float) -> None:
        self.z, self.yc, self.a, self.b, self.slope, self.tube = z, yc, a, b, slope, tube

    def sdf(self, x, y, z):
        dy = y - self.yc
        rho = np.sqrt((x / self.a) ** 2 + (dy / self.b) ** 2)
        dist_c = np.sqrt(x * x + dy * dy)
        d_rad = (rho - 1.0) * dist_c / np.maximum(rho, 1e-6)
        # ribs slope down toward the front: anterior points sit lower
        zc = self.z - self.slope * np.maximum(dy + self.b, 0.0) * 0.5
        dz = z - zc
        return np.sqrt(d_rad**2 + dz**2) - self.tube

    def bbox(self):
        r = max(self.a, self.b) + self.tube + 2
        drop = self.slope * self.b + self.tube + 2
        return (np.array([-r, self.yc - r, self.z - drop - self.tube]), np.array([r, self.yc + r, self.z + self.tube + 2]))


def leg_bones(sk: Skeleton, leg: LegTransform, side: int, hu) -> list[Stroke]:
    """Femur (head, neck, shaft, condyles), patella, tibia, fibula and foot bones of one leg."""
    h = sk.h
    s = "left" if side < 0 else "right"
    out: list[Stroke] = []
    head = leg.hip
    troch = leg.thigh(head + [side * 0.02 * h, -0.008 * h, -0.014 * h])
    cond = leg.thigh(leg.knee + [0, 0.0, 0.012 * h])
    out += bone(Ellipsoid(head, np.full(3, 0.0135 * sk.r)), Ellipsoid(head, np.full(3, 0.0135 * sk.r - 2.5)),
                f"femur_{s}", cortical=hu.trabecular + 400, core=hu.trabecular)
    out.append(Stroke(rod(head, troch, 0.0085 * sk.r), hu.trabecular + 450, L[f"femur_{s}"]))
    out += long_bone(troch, cond, 0.0078 * sk.r, f"femur_{s}", ends=(0.012 * sk.r, 0.0), hu=hu)
    out += bone(Ellipsoid(cond, np.array([0.024, 0.02, 0.016]) * sk.r), Ellipsoid(cond, np.array([0.024, 0.02, 0.016]) * sk.r - 2.5),
                f"femur_{s}", cortical=hu.trabecular + 350, core=hu.trabecular)
    pat = leg.thigh(leg.knee + [0, 0.032 * h, 0.012 * h])
    out.append(Stroke(Ellipsoid(pat, np.array([0.012, 0.006, 0.013]) * sk.r, rot_x(leg.hip_flex_deg)), hu.trabecular + 400,
                      L[f"patella_{s}"]))
    plateau = leg.calf(leg.knee + [0, 0.0, -0.01 * h])
    distal = leg.calf(leg.ankle + [0, 0.0, 0.01 * h])
    out += bone(Ellipsoid(plateau, np.array([0.022, 0.018, 0.011]) * sk.r),
                Ellipsoid(plateau, np.array([0.022, 0.018, 0.011]) * sk.r - 2.5), f"tibia_{s}",
                cortical=hu.trabecular + 350, core=hu.trabecular)
    out += long_bone(plateau, distal, 0.0068 * sk.r, f"tibia_{s}", ends=(0.0, 0.0095 * sk.r), hu=hu)
    fib0 = leg.calf(leg.knee + [side * 0.016 * h, -0.008 * h, -0.018 * h])
    fib1 = leg.calf(leg.ankle + [side * 0.014 * h, -0.004 * h, -0.002 * h])
    out.append(Stroke(rod(fib0, fib1, 0.0032 * sk.r), T.CORTICAL_HU * 0.75, L[f"fibula_{s}"]))
    a = leg.ankle
    for p, r in ((a + [0, -0.022 * h, -0.016 * h], [0.012, 0.02, 0.012]),
                 (a + [0, 0.004 * h, -0.006 * h], [0.011, 0.014, 0.009])):
        out.append(Stroke(Ellipsoid(leg.foot(p), np.array(r) * h, rot_x(-leg.calf_deg - leg.foot_flex_deg)),
                          hu.trabecular + 250, L[f"foot_bones_{s}"]))
    mt0, mt1 = leg.foot(a + [0, 0.02 * h, -0.02 * h]), leg.foot(a + [side * 0.004 * h, 0.095 * h, -0.032 * h])
    out.append(Stroke(Sweep(p0=mt0, p1=mt1, knots=np.array([0.0, 1.0]), a=np.array([0.016, 0.02]) * sk.r,
                            b=np.array([0.006, 0.004]) * sk.r, caps="round"), hu.trabecular + 300, L[f"foot_bones_{s}"]))
    return out


def arm_bones(sk: Skeleton, shoulder, elbow, wrist, hand_end, side: int, hu) -> list[Stroke]:
    """Humerus, forearm bones (radius + ulna) and hand bones along the posed arm (mm)."""
    h = sk.h
    s = "left" if side < 0 else "right"
    out = bone(Ellipsoid(shoulder, np.full(3, 0.0125 * sk.r)), Ellipsoid(shoulder, np.full(3, 0.0125 * sk.r - 2.5)),
               f"humerus_{s}", cortical=hu.trabecular + 400, core=hu.trabecular)
    out += long_bone(shoulder, elbow, 0.0062 * sk.r, f"humerus_{s}", ends=(0.0, 0.0095 * sk.r), hu=hu)
    d = (wrist - elbow) / np.linalg.norm(wrist - elbow)
    perp = np.cross(d, [0, 0, 1.0]) if abs(d[2]) < 0.9 else np.cross(d, [0, 1.0, 0])
    perp = perp / np.linalg.norm(perp) * 0.007 * h
    for off in (perp, -perp):
        out.append(Stroke(rod(elbow + off * 0.6, wrist + off, 0.0038 * sk.r), T.CORTICAL_HU * 0.8, L[f"forearm_bones_{s}"]))
    out.append(Stroke(Sweep(p0=wrist + d * 0.01 * h, p1=hand_end - d * 0.015 * h, knots=np.array([0.0, 1.0]),
                            a=np.array([0.014, 0.016]) * sk.r, b=np.array([0.005, 0.003]) * sk.r, u=perp, caps="round"),
                      hu.trabecular + 200, L[f"hand_bones_{s}"]))
    return out


def skull(sk: Skeleton, hu) -> list[Stroke]:
    """Scalp, cranium (clipped at the skull base), brain, face with mandible and maxillary sinuses."""
    h = sk.h
    r = np.array([0.041, 0.051, 0.05]) * h
    c = np.array([0.0, -0.004 * h, h - 5.0 - r[2]])
    base = HalfSpace(np.array([0, 0.35, -1.0]), -(0.922 * h))  # skull base, higher anteriorly
    face_c = np.array([0.0, 0.028 * h, 0.91 * h])
    out = [
        Stroke(Ellipsoid(face_c, np.array([0.036, 0.038, 0.042]) * sk.r), T.SOFT_TISSUE_HU, L["soft_tissue"]),
        Stroke(Ellipsoid(c, r + 5.0) & HalfSpace(np.array([0, 0.35, -1.0]), -(0.912 * h)), T.SOFT_TISSUE_HU, L["soft_tissue"]),
        Stroke(Ellipsoid(c, r) & base, T.SKULL_HU, L["skull"]),
        Stroke(Ellipsoid(c, r - 6.5) & HalfSpace(np.array([0, 0.35, -1.0]), -(0.922 * h) - 6.0), T.BRAIN_HU, L["brain"]),
    ]
    mand_c = np.array([0.0, 0.02 * h, 0.885 * h])
    mand = Subtract(Ellipsoid(mand_c, np.array([0.03, 0.036, 0.016]) * sk.r), Ellipsoid(mand_c, np.array([0.03, 0.036, 0.03]) * sk.r - 5.5))
    out.append(Stroke(mand & HalfSpace(np.array([0, -1.0, 0]), -(mand_c[1] - 0.01 * h)), T.SKULL_HU, L["skull"]))
    max_c = np.array([0.0, 0.035 * h, 0.912 * h])
    out.append(Stroke(Ellipsoid(max_c, np.array([0.028, 0.018, 0.014]) * sk.r), hu.trabecular + 400, L["skull"]))
    for side in (-1, 1):
        out.append(Stroke(Ellipsoid(max_c + [side * 0.012 * h, 0.002 * h, 0.0], np.array([0.008, 0.009, 0.009]) * sk.r),
                          T.AIR_HU, L["soft_tissue"]))
    return out
