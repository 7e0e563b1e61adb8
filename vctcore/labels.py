"""Label maps: the phantom's fine labels, the paper's 16 merged classes, and TotalSegmentator names.

Plain data, the single source for the phantom, measurement, CLI and app.

* Fine labels (``FINE_LABELS``): what the digital-human phantom draws. Names follow
  TotalSegmentator's where an equivalent exists (``vertebrae_C1``, ``hip_left``,
  ``autochthon_right``...), so real segmentations map onto the same vocabulary.
* Merged classes (``MERGED_CLASSES``): the 16 organ classes of the seed paper (Table 1), value 0 is
  background / everything else. The paper merged TotalSegmentator's 117 "total" classes plus its 11
  "appendicular_bones" classes (117 + 11 = the paper's 128 organs): "bone" is every bone of the
  ``total`` task (skull, spine, ribs, sternum, pelvis, femur, humerus, scapula, clavicle) and
  "appendicular_bones" the bones of the ``appendicular_bones`` task (tibia, fibula, feet, forearms,
  hands, patella).
* ``totalsegmentator_to_merged()`` builds the TotalSegmentator -> merged mapping from the installed
  ``totalsegmentator`` package's own class map (never a copied list).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import numpy as np

_VERTEBRAE = [f"vertebrae_C{i}" for i in range(1, 8)] + [f"vertebrae_T{i}" for i in range(1, 13)] + [
    f"vertebrae_L{i}" for i in range(1, 6)
]

#: the named muscle groups: fine labels in the phantom and members of ``MUSCLE_LABELS``
_NAMED_MUSCLES: tuple[str, ...] = (
    "gluteus_left",
    "gluteus_right",
    "autochthon_left",
    "autochthon_right",
    "iliopsoas_left",
    "iliopsoas_right",
)

_FINE_NAMES: list[str] = [
    "background",
    # soft-tissue compartments
    "subcutaneous_fat",
    "visceral_fat",
    "skeletal_muscle",  # skeletal muscle not in a named muscle group below
    "soft_tissue",  # skin, fascia, connective tissue, vessels, glands: the rest of the lean mass
    "brain",
    "skull",
    *_VERTEBRAE,
    "sacrum",
    "hip_left",
    "hip_right",
    "femur_left",
    "femur_right",
    "patella_left",
    "patella_right",
    "tibia_left",
    "tibia_right",
    "fibula_left",
    "fibula_right",
    "foot_bones_left",
    "foot_bones_right",
    "humerus_left",
    "humerus_right",
    "forearm_bones_left",
    "forearm_bones_right",
    "hand_bones_left",
    "hand_bones_right",
    "clavicula_left",
    "clavicula_right",
    "scapula_left",
    "scapula_right",
    "ribs",
    "sternum",
    "lung_upper_lobe_left",
    "lung_lower_lobe_left",
    "lung_upper_lobe_right",
    "lung_middle_lobe_right",
    "lung_lower_lobe_right",
    "trachea",
    "heart",
    "aorta",
    "liver",
    "spleen",
    "kidney_left",
    "kidney_right",
    "stomach",
    "bowel",
    "urinary_bladder",
    "prostate",
    "breast_gland",
    *_NAMED_MUSCLES,
    "spinal_canal",
]

#: fine label name -> integer value stored in ``labels.nii.gz``
FINE_LABELS: dict[str, int] = {name: i for i, name in enumerate(_FINE_NAMES)}
#: integer value -> fine label name
FINE_LABEL_NAMES: dict[int, str] = {i: name for name, i in FINE_LABELS.items()}

#: the paper's 16 merged classes (Table 1), value -> name; 0 is background / other tissue
MERGED_CLASSES: dict[int, str] = {
    0: "background",
    1: "bone",
    2: "spleen",
    3: "kidney",
    4: "liver",
    5: "lung_upper_lobes",
    6: "lung_lower_lobes",
    7: "lung_middle_lobe",
    8: "urinary_bladder",
    9: "prostate",
    10: "heart",
    11: "aorta",
    12: "gluteus_muscles",
    13: "autochthonous_muscles",
    14: "iliopsoas",
    15: "brain",
    16: "appendicular_bones",
}
MERGED_CLASS_IDS: dict[str, int] = {name: i for i, name in MERGED_CLASSES.items()}
N_MERGED_CLASSES = 16
#: the 16 organ classes of a merged map (background left out)
ORGAN_CLASSES: tuple[int, ...] = tuple(c for c in MERGED_CLASSES if c)
MERGED_BONE_IDS: tuple[int, int] = (MERGED_CLASS_IDS["bone"], MERGED_CLASS_IDS["appendicular_bones"])

# Ordered (regex, merged class) rules over structure names. They are applied to our fine names and
# to TotalSegmentator's names alike; the first matching rule wins, unmatched names map to 0.
_MERGE_RULES: list[tuple[str, str]] = [
    (r"^(tibia|fibula|patella|tarsal|metatarsal|phalanges_feet|phalanges_hand|ulna|radius|carpal|metacarpal)"
     r"(_left|_right)?$", "appendicular_bones"),
    (r"^(foot_bones|forearm_bones|hand_bones)_(left|right)$", "appendicular_bones"),
    (r"^(skull|sacrum|sternum|costal_cartilages|ribs|rib_(left|right)_\d+|vertebrae_[CTLS]\d+|"
     r"hip_(left|right)|femur_(left|right)|humerus_(left|right)|scapula_(left|right)|clavicula_(left|right))$",
     "bone"),
    (r"^spleen$", "spleen"),
    (r"^kidney_(left|right)$", "kidney"),
    (r"^liver$", "liver"),
    (r"^lung_upper_lobe_(left|right)$", "lung_upper_lobes"),
    (r"^lung_lower_lobe_(left|right)$", "lung_lower_lobes"),
    (r"^lung_middle_lobe_right$", "lung_middle_lobe"),
    (r"^urinary_bladder$", "urinary_bladder"),
    (r"^prostate$", "prostate"),
    (r"^heart$", "heart"),
    (r"^aorta$", "aorta"),
    (r"^gluteus_(maximus_|medius_|minimus_)?(left|right)$", "gluteus_muscles"),
    (r"^autochthon_(left|right)$", "autochthonous_muscles"),
    (r"^iliopsoas_(left|right)$", "iliopsoas"),
    (r"^brain$", "brain"),
]

#: fine-label groups used by body-composition measurement (Appendix B)
FAT_LABELS: tuple[str, ...] = ("subcutaneous_fat", "visceral_fat")
MUSCLE_LABELS: tuple[str, ...] = (
    "skeletal_muscle",
    *_NAMED_MUSCLES,
)


def merged_class_of(name: str) -> int:
    """Merged class id (0..16) of a structure name (fine label or TotalSegmentator name)."""
    for pattern, merged in _MERGE_RULES:
        if re.match(pattern, name):
            return MERGED_CLASS_IDS[merged]
    return 0


def is_bone(name: str) -> bool:
    """True for every skeletal structure (axial and appendicular)."""
    return merged_class_of(name) in MERGED_BONE_IDS


BONE_LABELS: tuple[str, ...] = tuple(n for n in _FINE_NAMES if is_bone(n))


def lookup_table(names: Mapping[int, str]) -> np.ndarray:
    """uint8 lookup array: source label value -> merged class id, for ``merged = lut[labels]``."""
    lut = np.zeros(max(names) + 1, dtype=np.uint8)
    for value, name in names.items():
        lut[value] = merged_class_of(name)
    return lut


_FINE_TO_MERGED = lookup_table(FINE_LABEL_NAMES)


def fine_to_merged(labels: np.ndarray) -> np.ndarray:
    """Map a fine label array (any shape) to the 16 merged classes (uint8, same shape)."""
    if labels.size and int(labels.max()) >= len(_FINE_TO_MERGED):
        raise ValueError(
            f"label value {int(labels.max())} is not a fine label (largest is {len(_FINE_TO_MERGED) - 1})"
        )
    if labels.size and int(labels.min()) < 0:  # numpy would silently index from the end of the table
        raise ValueError(f"label value {int(labels.min())} is not a fine label (labels are >= 0)")
    return _FINE_TO_MERGED[labels]


def label_values(names: Iterable[str]) -> list[int]:
    """Fine label values for a list of fine label names; unknown names raise KeyError naming them."""
    names = list(names)
    unknown = [n for n in names if n not in FINE_LABELS]
    if unknown:
        raise KeyError(f"unknown fine label(s): {', '.join(unknown)}")
    return [FINE_LABELS[n] for n in names]


def totalsegmentator_to_merged(task: str = "total") -> dict[str, int]:
    """Mapping from a TotalSegmentator task's class names to our merged class ids.

    Read from the installed ``totalsegmentator`` package's own class map, so it follows the installed
    version. Raises ImportError with a clear message when the package is missing.
    """
    try:
        from totalsegmentator.map_to_binary import class_map
    except ImportError as err:  # pragma: no cover - the package is in requirements.txt
        raise ImportError("the totalsegmentator package is not installed (pip install totalsegmentator)") from err
    if task not in class_map:
        raise KeyError(f"TotalSegmentator has no task {task!r}")
    return {name: merged_class_of(name) for name in class_map[task].values()}


def totalsegmentator_lookup(task: str = "total") -> np.ndarray:
    """uint8 lookup array: TotalSegmentator label value of ``task`` -> merged class id."""
    from totalsegmentator.map_to_binary import class_map

    return lookup_table(class_map[task])
