"""Tissue attenuation (HU) of the phantom, from typical non-contrast CT values.

Sources: standard CT attenuation tables (fat -120..-80, muscle 35..55, liver 55..65, spleen 45..50,
kidney 30..35, blood 40, brain 30..40, lung parenchyma -850..-750, cortical bone 1000..1900).
Muscle attenuation falls with age (myosteatosis); trabecular bone equals the requested
``bone_density_hu`` in the vertebral bodies (its definition) and tracks it elsewhere.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FAT_HU = -100.0
VISCERAL_FAT_HU = -95.0
SOFT_TISSUE_HU = 30.0
BRAIN_HU = 35.0
LUNG_HU = -820.0
AIR_HU = -1000.0
BLOOD_HU = 42.0
LIVER_HU = 58.0
SPLEEN_HU = 47.0
KIDNEY_HU = 32.0
STOMACH_HU = 25.0
BOWEL_HU = 22.0
BLADDER_HU = 8.0
PROSTATE_HU = 38.0
BREAST_GLAND_HU = 25.0
CSF_HU = 12.0
DISC_HU = 85.0
CORTICAL_HU = 1250.0
SKULL_HU = 1100.0
MARROW_HU = -40.0  # yellow marrow of long-bone shafts


@dataclass(frozen=True)
class TissueHU:
    """Per-patient HU values that depend on attributes (units: HU)."""

    muscle: float
    trabecular: float
    rib: float

    @classmethod
    def for_patient(cls, *, age_years: float, bone_density_hu: float) -> TissueHU:
        muscle = float(np.clip(55.0 - 0.2 * max(age_years - 30.0, 0.0), 30.0, 60.0))
        return cls(muscle=muscle, trabecular=float(bone_density_hu), rib=350.0 + 0.8 * float(bone_density_hu))


def density_g_ml(hu: float) -> float:
    """Mass density (g/mL) of a tissue of ``hu`` HU, Appendix B with water as reference."""
    return (max(hu, -1000.0) + 1000.0) / 1000.0
