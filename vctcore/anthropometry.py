"""Published anthropometric relations, used as dependencies when sampling a population.

Each relation is a vectorised ``mean_...`` function plus a residual SD constant: a sampled value is
the mean given the parents plus normal noise with that SD (the population sampler truncates it to
the valid range of :mod:`vctcore.attributes`). ``sex`` arguments take "F"/"M" strings (or a male
indicator: True/1 for men); every other argument is a float or a numpy array that broadcasts.

Sources:

* Body fat: Deurenberg, Weststrate & Seidell, Br J Nutr 65:105-114 (1991).
* Skeletal muscle: Janssen, Heymsfield, Wang & Ross, J Appl Physiol 89:81-88 (2000), whole-body MRI.
* Bone density: Jang, Graffy, Ziemlewicz, Lee, Summers & Pickhardt, Radiology 291:360-367 (2019),
  normative L1 trabecular attenuation at 120 kV in 20 374 adults.
* Body density: Siri, in Techniques for Measuring Body Composition, NAS (1961).
"""
from __future__ import annotations

import numpy as np

from vctcore.attributes import MAX_BFP_PLUS_MMP, SEX_CATEGORIES

__all__ = [
    "BFP_RESIDUAL_SD",
    "BONE_DENSITY_RESIDUAL_SD",
    "MAX_BFP_PLUS_MMP",
    "MMP_RESIDUAL_SD",
    "male_indicator",
    "mean_bfp_pct",
    "mean_body_volume_l",
    "mean_bone_density_hu",
    "mean_mmp_pct",
    "muscle_to_fat_free_ratio",
    "siri_body_density_g_cm3",
]

UNKNOWN_SEX = "sex: unknown value(s) {values}; expected 'F' or 'M' (or a male indicator 0/1)"

# Deurenberg 1991: standard error of estimate of the adult formula against densitometry (% fat).
BFP_RESIDUAL_SD = 4.1
# Muscle: residual of MMP given sex, age and body fat (percentage points); with the spread of
# body fat in a Janssen-like cohort it reproduces Janssen's total SD (5.1 % men, 5.5 % women).
MMP_RESIDUAL_SD = 3.0
# Bone: Jang 2019 reports SD 44 HU (< 30 y) and 38 HU (>= 90 y) within age groups; those SDs also
# hold contrast-enhanced scans and manual-vs-automated ROI differences (21 HU on average), so the
# biological residual used here is a little smaller.
BONE_DENSITY_RESIDUAL_SD = 35.0

# Skeletal muscle / fat-free mass ratio (q) at age <= 45, and its fall per year after 45.
# Calibrated by simulation so that a Janssen-like cohort (age 45 +- 16 y clipped to 18-88; BMI
# 25.6 +- 3.5 men, 24.4 +- 4.5 women -- our assumption of that cohort's make-up; body fat from
# Deurenberg with its residual) has mean MMP 38.4 % (men) and 30.6 % (women), Janssen's means, and
# SDs 5.0 / 4.9 % (Janssen: 5.1 / 5.5 %). SM/FFM of about 0.5 also agrees with MRI reference data.
_MMP_RATIO_YOUNG = {"F": 0.472, "M": 0.521}
_MMP_RATIO_DECLINE_PER_YEAR = {"F": 0.0010, "M": 0.0015}
_MMP_RATIO_DECLINE_START_YEARS = 45.0

# Jang 2019 normative L1 trabecular attenuation (HU) by age, read as a knot table that matches
# the published summary: 226 HU on average under 30, 89 HU at 90 or older, about 2.5 HU/yr decline,
# women higher than men until menopause and similar afterwards (so women fall faster after ~45).
_BONE_KNOTS_AGE = np.array([20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0])
_BONE_KNOTS_HU = {
    "F": np.array([235.0, 228.0, 215.0, 195.0, 160.0, 130.0, 105.0, 88.0, 75.0]),
    "M": np.array([220.0, 212.0, 198.0, 180.0, 158.0, 135.0, 112.0, 92.0, 80.0]),
}


def male_indicator(sex: object) -> np.ndarray:
    """1.0 for men, 0.0 for women; accepts "F"/"M" strings or booleans/0/1."""
    arr = np.atleast_1d(np.asarray(sex))
    if arr.dtype.kind in "biuf":
        vals = arr.astype(float)
        if not np.isin(vals, (0.0, 1.0)).all():
            raise ValueError(UNKNOWN_SEX.format(values=sorted(set(vals[~np.isin(vals, (0.0, 1.0))].tolist()))))
        return vals.reshape(np.shape(sex))
    bad = ~np.isin(arr.astype(object), SEX_CATEGORIES)
    if bad.any():
        raise ValueError(UNKNOWN_SEX.format(values=sorted({str(v) for v in arr[bad]})))
    return (arr == "M").astype(float).reshape(np.shape(sex))


def mean_bfp_pct(sex: object, age_years: object, bmi: object) -> np.ndarray:
    """Expected body-fat % from sex, age (years) and BMI (kg/m2), Deurenberg et al. 1991.

    BFP = 1.2 * BMI + 0.23 * age - 10.8 * male - 5.4  (adults; residual SD ``BFP_RESIDUAL_SD``).
    """
    male = male_indicator(sex)
    return 1.2 * np.asarray(bmi, float) + 0.23 * np.asarray(age_years, float) - 10.8 * male - 5.4


def muscle_to_fat_free_ratio(sex: object, age_years: object) -> np.ndarray:
    """Skeletal-muscle mass / fat-free mass: constant to age 45, then falling linearly.

    Janssen 2000 found relative muscle falling from the third decade (here carried by the rising
    fat share of body mass) but absolute muscle falling only from the end of the fifth decade (here
    a falling muscle share of fat-free mass after 45: -0.0015/yr men, -0.0010/yr women).
    """
    male = male_indicator(sex)
    young = np.where(male > 0, _MMP_RATIO_YOUNG["M"], _MMP_RATIO_YOUNG["F"])
    slope = np.where(male > 0, _MMP_RATIO_DECLINE_PER_YEAR["M"], _MMP_RATIO_DECLINE_PER_YEAR["F"])
    years_past = np.maximum(np.asarray(age_years, float) - _MMP_RATIO_DECLINE_START_YEARS, 0.0)
    return young - slope * years_past


def mean_mmp_pct(sex: object, age_years: object, bmi: object, *, bfp_pct: object | None = None) -> np.ndarray:
    """Expected skeletal-muscle % of body mass from sex, age (years) and BMI (kg/m2).

    MMP = (100 - BFP) * q(sex, age): muscle is a share q of the fat-free mass, so fat dilutes
    muscle % (higher BMI -> more fat -> lower MMP) and q falls with age after 45. Anchored to
    Janssen et al. 2000 (whole-body MRI, 468 adults: 38.4 +- 5.1 % men, 30.6 +- 5.5 % women).
    With ``bfp_pct`` given (a sampled or measured body fat) the mean is conditional on it, which
    keeps the realistic negative fat-muscle correlation; otherwise the Deurenberg mean BFP is used.
    Residual SD ``MMP_RESIDUAL_SD``.
    """
    fat = mean_bfp_pct(sex, age_years, bmi) if bfp_pct is None else np.asarray(bfp_pct, float)
    fat = np.clip(fat, 0.0, MAX_BFP_PLUS_MMP)
    return (100.0 - fat) * muscle_to_fat_free_ratio(sex, age_years)


def mean_bone_density_hu(sex: object, age_years: object) -> np.ndarray:
    """Expected L1-L3 trabecular attenuation (HU, 120 kV) from sex and age (years), Jang et al. 2019.

    Piecewise linear through the knot table above: about 220-235 HU at 20, about 105-112 HU at 80,
    women higher before menopause and declining faster after ~45. Residual SD
    ``BONE_DENSITY_RESIDUAL_SD``.
    """
    male = male_indicator(sex)
    age = np.asarray(age_years, float)
    women = np.interp(age, _BONE_KNOTS_AGE, _BONE_KNOTS_HU["F"])
    men = np.interp(age, _BONE_KNOTS_AGE, _BONE_KNOTS_HU["M"])
    return np.where(male > 0, men, women)


def siri_body_density_g_cm3(bfp_pct: object) -> np.ndarray:
    """Whole-body density (g/cm3) from body-fat %, inverting Siri's two-compartment equation.

    BFP = 495 / D - 450  ->  D = 495 / (BFP + 450).
    """
    return 495.0 / (np.asarray(bfp_pct, float) + 450.0)


def mean_body_volume_l(weight_kg: object, bfp_pct: object) -> np.ndarray:
    """Body volume estimate (litres) = weight (kg) / Siri density (g/cm3).

    This is the estimate used before an image exists (deterministic, no residual); once a CT is
    generated, the body volume measured from the body mask replaces it (that measurement also
    includes lung air, which the densitometric estimate excludes).
    """
    return np.asarray(weight_kg, float) / siri_body_density_g_cm3(bfp_pct)
