"""Label vocabularies of segmentations that come with a CT, and their conversion to fine labels.

Three vocabularies are understood (see :mod:`vctcore.labels`):

* ``"fine"``: the phantom's fine labels (``FINE_LABELS``), e.g. a cohort's ``labels.nii.gz``;
* ``"merged"``: the paper's 16 merged classes (``MERGED_CLASSES``), e.g. a cohort's ``seg.nii.gz``;
* ``"totalsegmentator"``: TotalSegmentator's ``total`` task (its installed class map).

A label map whose names are real structure names is converted name by name (any vocabulary, even
mixed). A map read without names (values only, ``label_<v>``) is identified by its values and by
how well the mean HU of each labelled structure fits its tissue under each vocabulary (lungs below
-500 HU, fat -200..-30 HU, bone above 120 HU, organs and muscles -80..250 HU).

Conversion gives one uint8 (X, Y, Z) array of fine label values; bones that a vocabulary does not
identify individually (merged "bone") get ``UNSPECIFIED_BONE``; bilateral structures without a side
(merged "kidney") are split at their own centroid along x (RAS: +x is the patient's right); other
named structures without a fine equivalent (pancreas, vessels...) become ``soft_tissue`` (lean tissue
that is neither fat nor skeletal muscle).
"""
from __future__ import annotations

import re

import numpy as np

from vctcore.labels import FINE_LABEL_NAMES, FINE_LABELS, MERGED_CLASSES, is_bone
from vctcore.measure.composition import UNSPECIFIED_BONE

VOCABULARIES = ("fine", "merged", "totalsegmentator")
SEG_FORMATS = ("auto", *VOCABULARIES)

# name -> fine name (regex, first match wins), for names that are not fine labels themselves
_ALIASES: list[tuple[str, str]] = [
    (r"^gluteus_(?:maximus|medius|minimus)_(left|right)$", r"gluteus_\1"),
    (r"^(?:rib_(?:left|right)_\d+|costal_cartilages)$", "ribs"),
    (r"^(?:small_bowel|duodenum|colon)$", "bowel"),
    (r"^vertebrae_S1$", "sacrum"),
    (r"^spinal_cord$", "spinal_canal"),
    (r"^kidney_cyst_(left|right)$", r"kidney_\1"),
    (r"^(?:atrial_appendage_left|heart_\w+)$", "heart"),
    (r"^lung_(upper|lower)_lobe_(left|right)$", r"lung_\1_lobe_\2"),
]
# merged class name -> fine name pair (left, right) or single fine name
_MERGED_TO_FINE: dict[str, tuple[str, ...]] = {
    "spleen": ("spleen",), "kidney": ("kidney_left", "kidney_right"), "liver": ("liver",),
    "lung_upper_lobes": ("lung_upper_lobe_left", "lung_upper_lobe_right"),
    "lung_lower_lobes": ("lung_lower_lobe_left", "lung_lower_lobe_right"),
    "lung_middle_lobe": ("lung_middle_lobe_right",), "urinary_bladder": ("urinary_bladder",),
    "prostate": ("prostate",), "heart": ("heart",), "aorta": ("aorta",),
    "gluteus_muscles": ("gluteus_left", "gluteus_right"),
    "autochthonous_muscles": ("autochthon_left", "autochthon_right"),
    "iliopsoas": ("iliopsoas_left", "iliopsoas_right"), "brain": ("brain",),
}
_GENERIC = re.compile(r"^label_\d+$")


def vocabulary_names(vocabulary: str) -> dict[int, str]:
    """Value -> name of a vocabulary (TotalSegmentator's from the installed package)."""
    if vocabulary == "fine":
        return dict(FINE_LABEL_NAMES)
    if vocabulary == "merged":
        return dict(MERGED_CLASSES)
    if vocabulary == "totalsegmentator":
        from totalsegmentator.map_to_binary import class_map

        return {int(k): str(v) for k, v in class_map["total"].items()}
    raise ValueError(f"unknown label vocabulary {vocabulary!r}; choose one of {', '.join(SEG_FORMATS)}")


def fine_target(name: str) -> tuple[str, ...] | int:
    """Fine name(s) a structure name converts to, or a label value (0 or UNSPECIFIED_BONE)."""
    if name == "background":
        return 0
    if name in FINE_LABELS:
        return (name,)
    for pattern, repl in _ALIASES:
        if re.match(pattern, name):
            return (re.sub(pattern, repl, name),)
    if name in _MERGED_TO_FINE:
        return _MERGED_TO_FINE[name]
    if is_bone(name) or name in ("bone", "appendicular_bones"):
        return UNSPECIFIED_BONE
    return ("soft_tissue",)


def _expected_ok(name: str, mean_hu: float) -> bool:
    """Does a structure's mean HU fit its tissue?"""
    if name.startswith("lung"):
        return mean_hu < -500
    if name in ("subcutaneous_fat", "visceral_fat"):
        return -200 <= mean_hu <= -30
    if is_bone(name) or name in ("bone", "appendicular_bones"):
        return mean_hu > 120
    if name in ("trachea", "background", "soft_tissue"):
        return True
    return -80 <= mean_hu <= 250


def detect_vocabulary(values: np.ndarray, counts: np.ndarray, mean_hu: np.ndarray) -> str:
    """Most plausible vocabulary for label ``values`` with voxel ``counts`` and mean HU per value.

    Vocabularies whose largest value is below the map's largest value are excluded; among the rest
    the one whose structures' mean HU fit their tissue for the most voxels wins (ties: fine first).
    """
    vmax = int(values.max()) if values.size else 0
    best, best_score = None, -1.0
    for vocabulary in VOCABULARIES:
        try:
            names = vocabulary_names(vocabulary)
        except ImportError:
            continue
        if vmax > max(names):
            continue
        score = sum(float(c) for v, c, h in zip(values, counts, mean_hu)
                    if v in names and _expected_ok(names[int(v)], float(h)))
        score /= max(float(counts.sum()), 1.0)
        if score > best_score + 1e-9:
            best, best_score = vocabulary, score
    if best is None:
        raise ValueError(f"label value {vmax} is larger than every known label vocabulary allows "
                         f"(fine <= {max(FINE_LABEL_NAMES)}, merged <= {max(MERGED_CLASSES)}, "
                         "TotalSegmentator total <= 117)")
    return best


def resolve_names(seg_names: dict[int, str], present: np.ndarray, mean_hu: np.ndarray,
                  seg_format: str = "auto", counts: np.ndarray | None = None) -> tuple[dict[int, str], str]:
    """Structure names of a label map's values and the vocabulary they come from.

    ``seg_names``: the map's own value -> name (``label_<v>`` when read without names); ``present``:
    the non-zero values in the map; ``mean_hu`` and ``counts``: their mean HU and voxel counts.
    ``seg_format`` "auto" keeps real names (vocabulary "named" unless they all belong to one
    vocabulary) and identifies value-only maps.
    """
    if seg_format not in SEG_FORMATS:
        raise ValueError(f"unknown segmentation format {seg_format!r}; choose one of {', '.join(SEG_FORMATS)}")
    if seg_format != "auto":
        names = vocabulary_names(seg_format)
        unknown = [int(v) for v in present if int(v) not in names]
        if unknown:
            raise ValueError(f"segmentation values {unknown[:10]} are not {seg_format} labels "
                             f"(largest {seg_format} label is {max(names)})")
        return names, seg_format
    named = [seg_names.get(int(v), "") for v in present]
    if named and not any(_GENERIC.match(n) or not n for n in named):
        vocab = next((v for v in VOCABULARIES if _all_in(named, v)), "named")
        return dict(seg_names), vocab
    if not present.size:
        return dict(FINE_LABEL_NAMES), "fine"
    vocabulary = detect_vocabulary(present, counts if counts is not None else np.ones(len(present)), mean_hu)
    return vocabulary_names(vocabulary), vocabulary


def _all_in(names: list[str], vocabulary: str) -> bool:
    try:
        known = set(vocabulary_names(vocabulary).values())
    except ImportError:
        return False
    return all(n in known for n in names)


def conversion(present: np.ndarray, names: dict[int, str]) -> tuple[np.ndarray, list[tuple[int, str, str]], set[str]]:
    """Lookup table source value -> fine value (uint8, 256 entries), the values to split by side
    ``(value, left_name, right_name)``, and the source names present."""
    lut = np.zeros(256, dtype=np.uint8)
    splits: list[tuple[int, str, str]] = []
    seen: set[str] = set()
    for value in present:
        if value == 0:
            continue
        name = names.get(int(value), f"label_{int(value)}")
        seen.add(name)
        target = fine_target(name)
        if isinstance(target, int):
            lut[value] = target
        else:
            lut[value] = FINE_LABELS[target[0]]
            if len(target) == 2:
                splits.append((int(value), target[0], target[1]))
    return lut, splits, seen


def split_sides(fine: np.ndarray, data: np.ndarray, splits: list[tuple[int, str, str]], affine: np.ndarray) -> None:
    """In place: voxels of each split value right of that structure's centroid (world x, RAS: +x is
    the patient's right) get the right-side fine label."""
    for value, _left, right in splits:
        idx = np.nonzero(data == value)
        x_mm = affine[0, 0] * idx[0] + affine[0, 1] * idx[1] + affine[0, 2] * idx[2]
        right_side = x_mm > x_mm.mean()
        fine[tuple(i[right_side] for i in idx)] = FINE_LABELS[right]
