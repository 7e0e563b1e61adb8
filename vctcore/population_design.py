"""Editing a PopulationSpec through a form: spec <-> flat widget values, a spec fitted to a CSV of
patients, the generator's training support, and saving specs to the workspace.

The app's population designer keeps one flat dict of widget values (``form_from_spec``); every key is
a plain string such as ``"height_cm.num.mean.F"`` so a page can bind each value to one widget. The dict
goes back to a spec dict with ``form_to_dict``; :class:`~vctcore.population.PopulationSpec` then checks
it and raises :class:`~vctcore.population.SpecError` with its own message, which ``error_section``
places next to the widgets it names. Units are those of :mod:`vctcore.attributes` (years, cm, kg, %,
HU); BMI parameters of the ``bmi`` weight distribution are in kg/m2. Nothing here imports streamlit.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vctcore.assets import GENERATOR_ENV, checkpoint_dirs, default_generator, population_specs
from vctcore.attributes import ATTRIBUTES, BMI_VALID_RANGE, SEX_CATEGORIES, bmi
from vctcore.population import DISTS, SPLIT_COLUMNS, PopulationSpec
from vctcore.workspace import NAME_RE

#: the attributes with a distribution of their own in the form (sex has its own fields)
EDITABLE = ("age_years", "height_cm", "weight_kg", "bfp_pct", "mmp_pct", "bone_density_hu")
NUMERIC_PARAMS = ("value", "mean", "sd", "low", "high", "shift")
BMI_SHAPES = ("normal", "lognormal")
SPLIT_KEEP = ("above", "below")
#: (mean, sd, low, high) shown when a distribution is switched to one whose parameters the spec lacks;
#: roughly adults (years, cm, kg, %, %, HU); "bmi" in kg/m2
TYPICAL: dict[str, tuple[float, float, float, float]] = {
    "age_years": (52.0, 18.0, 20.0, 85.0), "height_cm": (168.5, 9.5, 140.0, 205.0),
    "weight_kg": (80.0, 18.0, 40.0, 150.0), "bfp_pct": (30.0, 8.0, 5.0, 60.0),
    "mmp_pct": (35.0, 6.0, 15.0, 55.0), "bone_density_hu": (160.0, 45.0, 50.0, 300.0),
    "bmi": (27.0, 5.0, 16.0, 45.0),
}
DEFAULT_SPLIT = {"x": "body_volume_l", "y": "mmp_pct", "a": 0.25, "b": 1.0, "intercept": -57.0, "keep": "above"}
MAX_UPLOAD_BYTES = 5 * 1024 * 1024

BAD_SAVE_NAME = ("population name {name!r}: use 1 to 64 letters, digits, '-' or '_', starting with a letter "
                 "or a digit (it becomes the file name)")
SAVE_EXISTS = "population {name!r} already exists ({path}); tick 'overwrite' to replace it"
UPLOAD_TYPE = "{name}: not a CSV file (expected a name ending in .csv)"
UPLOAD_SIZE = "{name}: {size:.1f} MB is above the upload limit of {limit:.0f} MB"
UPLOAD_EMPTY = "{name}: the file is empty"
UPLOAD_TEXT = "{name}: not a UTF-8 text CSV ({problem})"
NO_MANIFEST = "generator {path}: no manifest.json with a training support"
BAD_MANIFEST = "generator {path}: manifest.json cannot be read ({problem})"


class UploadError(ValueError):
    """An uploaded CSV of patients that cannot be used; the message is one line naming the file."""


def param_namespace(dist: str) -> str:
    """Form namespace of a distribution's numeric parameters: BMI (kg/m2) and relation residuals
    (attribute unit) keep their own values, the plain distributions share theirs."""
    return {"bmi": "bmi", "relation": "rel"}.get(dist, "num")


def dist_params(dist: str) -> tuple[tuple[str, ...], frozenset[str]]:
    """(numeric parameters of ``dist`` in display order, the required ones)."""
    required, optional = DISTS[dist]
    return tuple(p for p in NUMERIC_PARAMS if p in required | optional), frozenset(required)


def form_key(name: str, dist: str, param: str, sex: str) -> str:
    """The form key of one numeric parameter of one sex, e.g. ``"height_cm.num.mean.F"``."""
    return f"{name}.{param_namespace(dist)}.{param}.{sex}"


def _typical(name: str, ns: str) -> dict[str, float | None]:
    mean, sd, low, high = TYPICAL["bmi" if ns == "bmi" else name]
    if ns == "rel":
        return {"sd": None, "shift": None}
    return {"value": mean, "mean": mean, "sd": sd, "low": low, "high": high, "shift": None}


def _attribute_form(name: str, cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """Form values of one continuous attribute (every namespace filled, so switching works)."""
    out: dict[str, Any] = {f"{name}.dist": None if cfg is None else cfg["dist"], f"{name}.empirical": None,
                           f"{name}.bmi.shape": "lognormal", f"{name}.per_sex": False}
    for ns in ("num", "bmi", "rel"):
        for param, value in _typical(name, ns).items():
            for s in SEX_CATEGORIES:
                out[f"{name}.{ns}.{param}.{s}"] = value
    if cfg is None:
        return out
    dist = cfg["dist"]
    if dist == "empirical":
        out[f"{name}.empirical"] = dict(cfg)
        return out
    out[f"{name}.bmi.shape"] = cfg.get("shape", "normal") if dist == "bmi" else "lognormal"
    for param in dist_params(dist)[0]:
        value = cfg.get(param)  # an optional parameter the spec leaves out stays empty (None)
        if isinstance(value, Mapping):
            out[f"{name}.per_sex"] = True
        for s in SEX_CATEGORIES:
            v = value.get(s) if isinstance(value, Mapping) else value
            out[form_key(name, dist, param, s)] = None if v is None else float(v)
    if dist == "uniform":  # mean and sd for a switch to a normal: the uniform's own
        for s in SEX_CATEGORIES:
            lo, hi = out[form_key(name, dist, "low", s)], out[form_key(name, dist, "high", s)]
            out[form_key(name, dist, "mean", s)] = (lo + hi) / 2
            out[form_key(name, dist, "sd", s)] = (hi - lo) / 4 if hi > lo else 1.0
    return out


def _empirical_cfg(cfg: Mapping[str, Any], base_dir: Path | None) -> dict[str, Any]:
    out = dict(cfg)
    p = Path(str(cfg["path"])).expanduser()
    if not p.is_absolute() and base_dir is not None:
        out["path"] = str((Path(base_dir) / p).resolve())
    return out


def form_from_spec(spec: PopulationSpec) -> dict[str, Any]:
    """The flat dict of widget values that describes ``spec`` (``form_to_dict`` inverts it).

    Keys: ``name``, ``description``; ``sex.dist`` ("categorical"/"fixed"/"empirical"), ``sex.p_F`` (share
    of women, 0-1), ``sex.value``; per attribute ``X.dist`` (None when another attribute's empirical CSV
    samples it), ``X.per_sex``, ``X.<ns>.<param>.<F|M>`` (see ``form_key``), ``X.bmi.shape``,
    ``X.empirical`` (the empirical entry, paths made absolute); ``constraints.<col>.low/high`` (None: open
    end), ``constraints.bfp_plus_mmp_max``; ``split.on``, ``split.x``, ``split.y``, ``split.a``,
    ``split.b``, ``split.intercept``, ``split.keep``.
    """
    attrs = {n: (_empirical_cfg(c, spec.base_dir) if c["dist"] == "empirical" else c)
             for n, c in spec.attributes.items()}
    sex = attrs.get("sex")
    form: dict[str, Any] = {"name": spec.name, "description": spec.description,
                            "sex.dist": None if sex is None else sex["dist"], "sex.p_F": 0.5, "sex.value": "F",
                            "sex.empirical": dict(sex) if sex is not None and sex["dist"] == "empirical" else None}
    if sex is not None and sex["dist"] == "categorical":
        form["sex.p_F"] = float(sex["p"].get("F", 0.0))
    elif sex is not None and sex["dist"] == "fixed":
        form["sex.value"] = sex["value"]
    for name in EDITABLE:
        form.update(_attribute_form(name, attrs.get(name)))
    for col in SPLIT_COLUMNS:
        lo, hi = spec.constraints.get(col, (None, None))
        form[f"constraints.{col}.low"] = None if lo is None else float(lo)
        form[f"constraints.{col}.high"] = None if hi is None else float(hi)
    total = spec.constraints.get("bfp_plus_mmp_max")
    form["constraints.bfp_plus_mmp_max"] = None if total is None else float(total)
    split = spec.split.to_dict() if spec.split is not None else None
    form["split.on"] = split is not None
    s = DEFAULT_SPLIT if split is None else {"x": split["x"], "y": split["y"], "a": split["coef"][0],
                                              "b": split["coef"][1], "intercept": split["intercept"],
                                              "keep": split["keep"]}
    form.update({f"split.{k}": (float(v) if k in ("a", "b", "intercept") else v) for k, v in s.items()})
    return form


def _number(form: Mapping[str, Any], name: str, dist: str, param: str) -> Any:
    """One parameter as a number, a per-sex mapping or None (not given)."""
    f, m = (form.get(form_key(name, dist, param, s)) for s in SEX_CATEGORIES)
    if not form.get(f"{name}.per_sex") or f == m:
        return f
    return {"F": f, "M": m}


def _attribute_dict(form: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    dist = form.get(f"{name}.dist")
    if dist is None:
        return None
    if dist == "empirical":
        return dict(form[f"{name}.empirical"])
    cfg: dict[str, Any] = {"dist": dist}
    if dist == "bmi":
        cfg["shape"] = form.get(f"{name}.bmi.shape", "normal")
    for param in dist_params(dist)[0]:
        value = _number(form, name, dist, param)
        if value is not None:
            cfg[param] = value
    return cfg


def form_to_dict(form: Mapping[str, Any]) -> dict[str, Any]:
    """The spec dict (``PopulationSpec.from_dict`` input) of a form from ``form_from_spec``.

    Parameters left empty (None) are left out, so a required one gives the spec's "needs" error; a
    per-sex pair with equal values is written as one number.
    """
    attributes: dict[str, Any] = {}
    sex_dist = form.get("sex.dist")
    if sex_dist == "categorical":
        p_f = form.get("sex.p_F")
        attributes["sex"] = {"dist": "categorical",
                             "p": {"F": p_f, "M": None if p_f is None else round(1.0 - float(p_f), 12)}}
    elif sex_dist == "fixed":
        attributes["sex"] = {"dist": "fixed", "value": form.get("sex.value")}
    elif sex_dist == "empirical":
        attributes["sex"] = dict(form["sex.empirical"])
    for name in EDITABLE:
        cfg = _attribute_dict(form, name)
        if cfg is not None:
            attributes[name] = cfg
    constraints: dict[str, Any] = {}
    for col in SPLIT_COLUMNS:
        lo, hi = form.get(f"constraints.{col}.low"), form.get(f"constraints.{col}.high")
        if lo is not None or hi is not None:
            constraints[col] = [lo, hi]
    if form.get("constraints.bfp_plus_mmp_max") is not None:
        constraints["bfp_plus_mmp_max"] = form["constraints.bfp_plus_mmp_max"]
    out: dict[str, Any] = {"name": form.get("name"), "description": form.get("description") or "",
                           "attributes": attributes, "constraints": constraints}
    if form.get("split.on"):
        out["split"] = {"x": form.get("split.x"), "y": form.get("split.y"),
                        "coef": [form.get("split.a"), form.get("split.b")],
                        "intercept": form.get("split.intercept"), "keep": form.get("split.keep")}
    return out


def spec_from_form(form: Mapping[str, Any]) -> PopulationSpec:
    """The checked spec of a form; SpecError (the spec's own message) when a setting is invalid."""
    return PopulationSpec.from_dict(form_to_dict(form))


def error_section(message: str) -> str:
    """Which part of the form a SpecError message is about: an attribute name, "sex", "constraints",
    "split" or "general" (name, sampling)."""
    head = message.split(":", 1)[0]
    if head.startswith("attributes."):
        return head.split(".")[1].split("[")[0]
    for section in ("constraints", "split"):
        if head == section or head.startswith(section + "."):
            return section
    return "general"


def without_split(spec: PopulationSpec) -> PopulationSpec:
    """The same population before its bias split (to draw both sides of the boundary)."""
    d = spec.to_dict()
    d.pop("split", None)
    return PopulationSpec.from_dict(d, base_dir=spec.base_dir)


def with_bmi(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of an attribute table with a ``bmi`` column (kg/m2) from height (cm) and weight (kg)."""
    out = df.copy()
    out["bmi"] = bmi(out["height_cm"].astype(float), out["weight_kg"].astype(float))
    return out


# ---- a spec fitted to a CSV of patients --------------------------------------------------------
@dataclass(frozen=True)
class PopulationUpload:
    """An uploaded CSV of patients, read by the trial's population reader.

    ``table``: one row per patient, every attribute (missing body fat, muscle and bone density filled
    from published relations); ``measured``: the optional columns the CSV gave for every row; ``notes``:
    the reader's warnings.
    """

    name: str
    table: pd.DataFrame
    measured: tuple[str, ...]
    notes: tuple[str, ...]


def read_population_upload(filename: str, content: bytes) -> PopulationUpload:
    """Check an uploaded CSV (type, size, text, then the trial reader's columns and value ranges).

    Raises UploadError with one line naming the file and the first problem.
    """
    from vctcore.trial.config import PopulationSource
    from vctcore.trial.populations import OPTIONAL, PopulationError, population_rows

    name = Path(filename).name
    if not name.lower().endswith(".csv"):
        raise UploadError(UPLOAD_TYPE.format(name=name))
    if len(content) > MAX_UPLOAD_BYTES:
        raise UploadError(UPLOAD_SIZE.format(name=name, size=len(content) / 2**20, limit=MAX_UPLOAD_BYTES / 2**20))
    if not content.strip():
        raise UploadError(UPLOAD_EMPTY.format(name=name))
    try:
        if b"\x00" in content:
            raise UnicodeDecodeError("utf-8", content, content.index(b"\x00"), content.index(b"\x00") + 1,
                                     "NUL byte")
        content.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UploadError(UPLOAD_TEXT.format(name=name, problem=err.reason + f" at byte {err.start}")) from None
    stem = Path(name).stem
    with tempfile.TemporaryDirectory(prefix="vct_upload_") as tmp:
        path = Path(tmp) / "upload.csv"
        path.write_bytes(content)
        try:
            table, notes = population_rows(PopulationSource(name=stem, csv=path), seed=0)
        except PopulationError as err:
            raise UploadError(str(err).replace(str(path), name).splitlines()[0]) from None
        raw = pd.read_csv(path)
    measured = tuple(c for c in OPTIONAL if c in raw.columns and raw[c].notna().all())
    table = table.drop(columns=["population", "outside_support"], errors="ignore")
    return PopulationUpload(name, table, measured, tuple(n.replace(str(path), name) for n in notes))


def _fit(x: pd.Series, sex: pd.Series, *, bounds: tuple[float, float]) -> dict[str, Any]:
    """Truncated normal per sex (mean, sd), truncated to the observed range (units of ``x``)."""
    x = x.astype(float)
    span = bounds[1] - bounds[0]
    pooled = (float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else 0.0)
    mean, sd = {}, {}
    for s in SEX_CATEGORIES:
        xs = x[sex == s]
        m, d = (float(xs.mean()), float(xs.std(ddof=1))) if len(xs) > 1 else pooled
        mean[s], sd[s] = round(m, 2), round(max(d, 1e-3 * span), 3)
    low = max(bounds[0], math.floor(float(x.min()) * 100) / 100)
    high = min(bounds[1], math.ceil(float(x.max()) * 100) / 100)
    one = mean["F"] == mean["M"] and sd["F"] == sd["M"]
    return {"dist": "truncnormal", "mean": mean["F"] if one else mean, "sd": sd["F"] if one else sd,
            "low": low, "high": high}


def spec_from_table(table: pd.DataFrame, *, name: str, measured: tuple[str, ...] = (),
                    source: str = "a CSV") -> PopulationSpec:
    """A spec that resembles an attribute table: the share of women; age, height and BMI (for weight)
    as truncated normals per sex over the observed range; body fat, muscle and bone density fitted the
    same way where ``measured`` names them, else from the published relations."""
    sex = table["sex"].astype(str)
    p_f = round(float((sex == "F").mean()), 4)
    attrs: dict[str, Any] = {"sex": {"dist": "categorical", "p": {"F": p_f, "M": round(1.0 - p_f, 4)}}}
    for col in ("age_years", "height_cm"):
        attrs[col] = _fit(table[col], sex, bounds=(ATTRIBUTES[col].low, ATTRIBUTES[col].high))
    b = pd.Series(np.asarray(bmi(table["height_cm"].astype(float), table["weight_kg"].astype(float))),
                  index=table.index)
    attrs["weight_kg"] = {**_fit(b, sex, bounds=BMI_VALID_RANGE), "dist": "bmi", "shape": "normal"}
    for col in ("bfp_pct", "mmp_pct", "bone_density_hu"):
        attrs[col] = (_fit(table[col], sex, bounds=(ATTRIBUTES[col].low, ATTRIBUTES[col].high))
                      if col in measured else {"dist": "relation"})
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "uploaded"
    desc = (f"Fitted to {len(table)} patients of {source}: share of women, truncated normals per sex for "
            f"age, height and BMI" + (f" and {', '.join(measured)}" if measured else "")
            + ", other attributes from published relations.")
    return PopulationSpec.from_dict({"name": safe, "description": desc, "attributes": attrs,
                                     "constraints": {"bfp_plus_mmp_max": 85}})


# ---- the generator's training support ----------------------------------------------------------
def generator_support(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The training support of a generator directory (or its manifest.json; default: the default generator,
    :func:`vctcore.assets.default_generator`) without loading networks:
    ``{attribute: {"categories": [...]} or {"min": ..., "max": ...}}`` in attribute units."""
    p = Path(path) if path is not None else default_generator()
    manifest = p / "manifest.json" if p.is_dir() else p
    if not manifest.is_file():
        raise ValueError(NO_MANIFEST.format(path=p))
    try:
        support = json.loads(manifest.read_text(encoding="utf-8")).get("support")
    except (OSError, ValueError, AttributeError) as err:
        raise ValueError(BAD_MANIFEST.format(path=p, problem=err)) from None
    if not isinstance(support, Mapping) or not support:
        raise ValueError(NO_MANIFEST.format(path=p))
    return {str(k): dict(v) for k, v in support.items()}


def _has_support(manifest: Path) -> bool:
    try:
        return bool(json.loads(manifest.read_text(encoding="utf-8")).get("support"))
    except (OSError, ValueError, AttributeError):
        return False


def list_generators(root: Path | None = None) -> dict[str, Path]:
    """Generator directories whose manifest records a training support, by name relative to their
    ``checkpoints/`` directory (``default`` first): under ``root``, or (None) under every shipped
    checkpoints directory (:func:`vctcore.assets.checkpoint_dirs`, the first holding a name wins), with
    ``$VCT_GENERATOR`` first under the name ``VCT_GENERATOR`` when it is set and elsewhere."""
    out: dict[str, Path] = {}
    for base in [root] if root is not None else checkpoint_dirs():
        for manifest in sorted(base.rglob("manifest.json")):
            if _has_support(manifest):
                out.setdefault(str(manifest.parent.relative_to(base)), manifest.parent)
    out = dict(sorted(out.items(), key=lambda kv: kv[0] != "default"))
    env = default_generator()
    if root is None and os.environ.get(GENERATOR_ENV) and _has_support(env / "manifest.json") \
            and env.resolve() not in {p.resolve() for p in out.values()}:
        out = {GENERATOR_ENV: env, **out}
    return out


def outside_masks(df: pd.DataFrame, support: Mapping[str, Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Per supported attribute present in ``df``: True for the rows outside the training support."""
    out = {}
    for name, sup in support.items():
        if name not in df.columns:
            continue
        if "categories" in sup:
            out[name] = ~df[name].astype(str).isin([str(c) for c in sup["categories"]]).to_numpy()
        else:
            x = pd.to_numeric(df[name], errors="coerce").to_numpy(float)
            out[name] = ~((x >= float(sup["min"])) & (x <= float(sup["max"])))
    return out


def support_table(df: pd.DataFrame, support: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Per supported attribute: the training range, and how many / which share (0-1) of rows lie outside."""
    rows = []
    for name, mask in outside_masks(df, support).items():
        sup, unit = support[name], ATTRIBUTES[name].unit if name in ATTRIBUTES else ""
        rng = (", ".join(map(str, sup["categories"])) if "categories" in sup
               else f"{float(sup['min']):.4g}-{float(sup['max']):.4g} {unit}".strip())
        rows.append({"attribute": name, "training range": rng, "outside": int(mask.sum()),
                     "share outside": float(mask.mean()) if len(mask) else 0.0})
    return pd.DataFrame(rows, columns=["attribute", "training range", "outside", "share outside"])


def support_warnings(df: pd.DataFrame, support: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per attribute with patients outside the generator's training support (name, share,
    count, range), then one for the share of patients with any attribute outside; empty when inside."""
    table = support_table(df, support)
    lines = [f"{name}: {100 * share:.1f} % of patients ({k} of {len(df)}) lie outside the generator's training "
             f"range {rng}" for name, rng, k, share in table.itertuples(index=False, name=None) if k]
    if lines:
        any_out = np.logical_or.reduce(list(outside_masks(df, support).values()))
        lines.append(f"{100 * any_out.mean():.1f} % of patients ({int(any_out.sum())} of {len(df)}) have at least "
                     "one attribute outside the training support: their synthetic CT is an extrapolation")
    return lines


# ---- listing and saving specs ------------------------------------------------------------------
def populations_dir(root: Path | None = None) -> Path:
    """Where saved population specs live: ``<workspace>/populations``."""
    from vctcore.workspace import workspace_root

    return (root or workspace_root()) / "populations"


def list_specs(root: Path | None = None) -> dict[str, Path]:
    """Shipped specs (``shipped/NAME``) then the workspace's saved specs (``workspace/NAME``)."""
    out = {f"shipped/{p.stem}": p for p in population_specs()}
    out.update({f"workspace/{p.stem}": p for p in sorted(populations_dir(root).glob("*.yaml"))})
    return out


def check_save_name(name: str) -> str:
    """``name`` when it can be a file name; ValueError (BAD_SAVE_NAME) otherwise."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(BAD_SAVE_NAME.format(name=name))
    return name


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and os.replace, so a
    reader (or a second session) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_spec(spec: PopulationSpec, *, root: Path | None = None, overwrite: bool = False) -> Path:
    """Write ``spec`` as ``<workspace>/populations/<spec.name>.yaml`` (atomically) and return the path.

    ValueError when the name cannot be a file name, or the file exists and ``overwrite`` is False.
    """
    path = populations_dir(root) / f"{check_save_name(spec.name)}.yaml"
    if path.exists() and not overwrite:
        raise ValueError(SAVE_EXISTS.format(name=spec.name, path=path))
    atomic_write_text(path, spec.to_yaml())
    return path


def content_key(filename: str, content: bytes) -> str:
    """A short identity for an upload (name + sha256 of the bytes), to read each upload once."""
    return f"{filename}:{hashlib.sha256(content).hexdigest()[:16]}"
