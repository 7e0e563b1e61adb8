"""Trial configuration: one YAML file per trial (``assets/trials/*.yaml``), checked key by key.

Two designs share the file format (section names as the YAML's top-level keys):

* ``design: paper`` (the seed paper's section 1.5): ``target``, ``real``, ``split``, ``sizes``, ``model``,
  ``generator``, ``measurement``, ``statistics``.
* ``design: audit``: ``model`` (a model directory), ``reference_population``, ``target_populations``,
  ``generator``, ``measurement``, ``statistics``.

Either design may name an ``executor`` (``local``, ``ray`` or ``{kind, address, workers}``: where patients
are built, made and measured; it changes no result). Paths are resolved relative to the config file.
Unknown keys, missing keys and wrong types raise :class:`TrialConfigError` naming the key (``section.key``)
and the file.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vctcore.attributes import ATTRIBUTE_NAMES, CONDITIONING_ATTRIBUTES
from vctcore.executors import KINDS, ExecutorSpec
from vctcore.jsonsafe import json_safe

DESIGNS = ("paper", "audit")
TARGETS = ("bfp_pct", "mmp_pct")
SEGMENTATIONS = ("own", "independent")

ERR_UNKNOWN_KEY = "unknown key {key!r} (allowed: {allowed})"
ERR_MISSING_KEY = "missing key {key!r}"
ERR_TYPE = "{key} must be {kind}, got {value!r}"


class TrialConfigError(ValueError):
    """A trial configuration that cannot run: the message names the key."""


def _check_keys(d: Any, section: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
    if not isinstance(d, Mapping):
        raise TrialConfigError(ERR_TYPE.format(key=section or "the config", kind="a mapping", value=d))
    prefix = f"{section}." if section else ""
    for key in d:
        if key not in allowed:
            raise TrialConfigError(ERR_UNKNOWN_KEY.format(key=prefix + str(key), allowed=", ".join(allowed)))
    for key in required:
        if d.get(key) is None:
            raise TrialConfigError(ERR_MISSING_KEY.format(key=prefix + key))
    return dict(d)


def _int(d: Mapping, key: str, section: str, default: int | None, low: int = 0) -> int | None:
    v = d.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise TrialConfigError(ERR_TYPE.format(key=f"{section}.{key}", kind=f"an integer >= {low}", value=v))
    return int(v)


def _float(d: Mapping, key: str, section: str, default: float | None, low: float | None = None) -> float | None:
    v = d.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (low is not None and v < low):
        kind = "a number" + (f" >= {low:g}" if low is not None else "")
        raise TrialConfigError(ERR_TYPE.format(key=f"{section}.{key}", kind=kind, value=v))
    return float(v)


def _choice(d: Mapping, key: str, section: str, choices: tuple[str, ...], default: str | None) -> str:
    v = d.get(key, default)
    if v not in choices:
        raise TrialConfigError(ERR_TYPE.format(key=f"{section}.{key}".lstrip("."), kind=" | ".join(choices), value=v))
    return str(v)


def _path(value: Any, key: str, base: Path) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise TrialConfigError(ERR_TYPE.format(key=key, kind="a path", value=value))
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


@dataclass(frozen=True)
class GeneratorSettings:
    """How synthetic and reconstructed patients are made: ``checkpoint`` (None: the shipped default),
    sampler ``steps`` and ``guidance`` (None: the checkpoint's), ``oversample`` synthetic patients per
    real test patient or population row (None: the design's default, paper 2, audit 1), the ``conditioning`` attributes taken from it, the torch ``device``."""

    checkpoint: Path | None = None
    steps: int | None = None
    guidance: float | None = None
    oversample: int | None = None
    conditioning: tuple[str, ...] = CONDITIONING_ATTRIBUTES
    device: str = "auto"
    seed: int = 0

    KEYS = ("checkpoint", "steps", "guidance", "oversample", "conditioning", "device", "seed")

    def oversample_or(self, default: int) -> int:
        return default if self.oversample is None else self.oversample

    @classmethod
    def parse(cls, d: Any, base: Path) -> GeneratorSettings:
        d = _check_keys(d or {}, "generator", cls.KEYS)
        cond = d.get("conditioning", list(CONDITIONING_ATTRIBUTES))
        if not isinstance(cond, list) or not cond or any(c not in ATTRIBUTE_NAMES for c in cond):
            raise TrialConfigError(ERR_TYPE.format(key="generator.conditioning",
                                                   kind=f"a list of attribute names ({', '.join(ATTRIBUTE_NAMES)})",
                                                   value=cond))
        return cls(checkpoint=_path(d.get("checkpoint"), "generator.checkpoint", base),
                   steps=_int(d, "steps", "generator", None, 1), guidance=_float(d, "guidance", "generator", None, 0),
                   oversample=_int(d, "oversample", "generator", None, 1), conditioning=tuple(cond),
                   device=_choice(d, "device", "generator", ("auto", "cpu", "cuda"), "auto"),
                   seed=_int(d, "seed", "generator", 0))


@dataclass(frozen=True)
class SubgroupSettings:
    n_bins: int = 3
    min_size: int = 10
    pairs: bool = True
    fdr: bool = True
    alpha: float = 0.05

    KEYS = ("n_bins", "min_size", "pairs", "fdr", "alpha")

    @classmethod
    def parse(cls, d: Any) -> SubgroupSettings:
        d = _check_keys(d or {}, "statistics.subgroups", cls.KEYS)
        for flag in ("pairs", "fdr"):
            if not isinstance(d.get(flag, True), bool):
                raise TrialConfigError(ERR_TYPE.format(key=f"statistics.subgroups.{flag}", kind="true or false",
                                                       value=d[flag]))
        return cls(n_bins=_int(d, "n_bins", "statistics.subgroups", 3, 2),
                   min_size=_int(d, "min_size", "statistics.subgroups", 10, 2),
                   pairs=d.get("pairs", True), fdr=d.get("fdr", True),
                   alpha=_float(d, "alpha", "statistics.subgroups", 0.05, 0))


@dataclass(frozen=True)
class StatisticsSettings:
    """Bootstrap resamples and level, forest sizes, verdict thresholds (percentage points), the seed."""

    n_boot: int = 2000
    level: float = 0.95
    seed: int = 0
    n_trees: int = 100
    min_leaf: int = 10
    importance_boot: int = 20
    acceptable_below: float = 2.0
    significant_above: float = 3.0
    subgroups: SubgroupSettings = field(default_factory=SubgroupSettings)

    KEYS = ("n_boot", "level", "seed", "n_trees", "min_leaf", "importance_boot", "acceptable_below",
            "significant_above", "subgroups")

    @classmethod
    def parse(cls, d: Any) -> StatisticsSettings:
        d = _check_keys(d or {}, "statistics", cls.KEYS)
        s = "statistics"
        out = cls(n_boot=_int(d, "n_boot", s, 2000, 10), level=_float(d, "level", s, 0.95, 0.5),
                  seed=_int(d, "seed", s, 0), n_trees=_int(d, "n_trees", s, 100, 1),
                  min_leaf=_int(d, "min_leaf", s, 10, 1), importance_boot=_int(d, "importance_boot", s, 20, 2),
                  acceptable_below=_float(d, "acceptable_below", s, 2.0, 0),
                  significant_above=_float(d, "significant_above", s, 3.0, 0),
                  subgroups=SubgroupSettings.parse(d.get("subgroups")))
        if out.level >= 1:
            raise TrialConfigError(ERR_TYPE.format(key="statistics.level", kind="a number in (0.5, 1)", value=out.level))
        if out.acceptable_below > out.significant_above:
            raise TrialConfigError(f"statistics.acceptable_below ({out.acceptable_below:g}) must not exceed "
                                   f"statistics.significant_above ({out.significant_above:g})")
        return out


@dataclass(frozen=True)
class PhantomPool:
    """The default 'real' cohort: ``n`` phantoms sampled from ``population`` with ``seed``."""

    population: Path
    n: int
    seed: int


@dataclass(frozen=True)
class SplitSettings:
    """The shortcut bias: the linear score ``coef[0] * x + coef[1] * y + c`` with ``c`` the intercept
    (one number, or one per sex), or chosen per sex so that a share ``ood_fraction`` of each sex's
    measured pool lies on the OOD side. ``keep``: the ID side ("above": score > 0). ``seed`` fixes the order
    in which patients are drawn into the roles (:func:`vctcore.trial.split.draw_order`)."""

    x: str
    y: str
    coef: tuple[float, float]
    keep: str = "above"
    intercept: float | dict[str, float] | None = None
    ood_fraction: float | None = None
    seed: int = 0

    KEYS = ("x", "y", "coef", "keep", "intercept", "ood_fraction", "seed")

    @classmethod
    def parse(cls, d: Any) -> SplitSettings:
        from vctcore.population import SPLIT_COLUMNS

        d = _check_keys(d, "split", cls.KEYS, ("x", "y", "coef"))
        for axis in ("x", "y"):
            if d[axis] not in SPLIT_COLUMNS:
                raise TrialConfigError(ERR_TYPE.format(key=f"split.{axis}", kind=" | ".join(SPLIT_COLUMNS),
                                                       value=d[axis]))
        coef = d["coef"]
        if (not isinstance(coef, list) or len(coef) != 2 or any(isinstance(c, bool) or not isinstance(c, (int, float))
                                                               for c in coef) or coef == [0, 0]):
            raise TrialConfigError(ERR_TYPE.format(key="split.coef", kind="two numbers, not both 0", value=coef))
        has_i, has_f = d.get("intercept") is not None, d.get("ood_fraction") is not None
        if has_i == has_f:
            raise TrialConfigError("split needs exactly one of 'intercept' (a number or {F: .., M: ..}) and "
                                   "'ood_fraction' (the share of each sex on the OOD side)")
        intercept = d.get("intercept")
        if isinstance(intercept, Mapping):
            _check_keys(intercept, "split.intercept", ("F", "M"), ("F", "M"))
            intercept = {k: float(_float(intercept, k, "split.intercept", None)) for k in ("F", "M")}
        elif has_i:
            intercept = _float(d, "intercept", "split", None)
        frac = _float(d, "ood_fraction", "split", None, 0)
        if frac is not None and not 0 < frac < 1:
            raise TrialConfigError(ERR_TYPE.format(key="split.ood_fraction", kind="a number in (0, 1)", value=frac))
        return cls(x=d["x"], y=d["y"], coef=(float(coef[0]), float(coef[1])),
                   keep=_choice(d, "keep", "split", ("above", "below"), "above"), intercept=intercept,
                   ood_fraction=frac, seed=_int(d, "seed", "split", 0))


@dataclass(frozen=True)
class ModelSettings:
    """The model under test: a model directory (``path``), or the reference 2.5D regressor trained in
    the trial (``reference``: epochs, seed, max_minutes)."""

    path: Path | None = None
    epochs: int | None = None
    seed: int = 0
    max_minutes: float | None = None

    @classmethod
    def parse(cls, d: Any, base: Path, *, allow_reference: bool) -> ModelSettings:
        d = _check_keys(d, "model", ("path", "reference") if allow_reference else ("path",))
        if (d.get("path") is None) == (d.get("reference") is None):
            what = "exactly one of 'path' (a model directory) and 'reference' (train the reference regressor)"
            raise TrialConfigError(f"model needs {what}" if allow_reference else ERR_MISSING_KEY.format(key="model.path"))
        if d.get("path") is not None:
            return cls(path=_path(d["path"], "model.path", base))
        r = _check_keys(d["reference"], "model.reference", ("epochs", "seed", "max_minutes"))
        return cls(epochs=_int(r, "epochs", "model.reference", None, 1), seed=_int(r, "seed", "model.reference", 0),
                   max_minutes=_float(r, "max_minutes", "model.reference", None, 0))


@dataclass(frozen=True)
class PopulationSource:
    """A population of an audit: a PopulationSpec YAML (``spec``, sampled ``n`` rows) or a CSV of
    attribute rows (``csv``; ``n`` takes the first n rows, None: all)."""

    name: str
    spec: Path | None = None
    csv: Path | None = None
    n: int | None = None

    @classmethod
    def parse(cls, d: Any, key: str, base: Path) -> PopulationSource:
        d = _check_keys(d, key, ("name", "spec", "csv", "n"), ("name",))
        if (d.get("spec") is None) == (d.get("csv") is None):
            raise TrialConfigError(f"{key} needs exactly one of 'spec' (a population YAML) and 'csv' (attribute rows)")
        out = cls(name=str(d["name"]), spec=_path(d.get("spec"), f"{key}.spec", base),
                  csv=_path(d.get("csv"), f"{key}.csv", base), n=_int(d, "n", key, None, 2))
        if out.spec is not None and out.n is None:
            raise TrialConfigError(ERR_MISSING_KEY.format(key=f"{key}.n"))
        return out


@dataclass(frozen=True)
class TrialConfig:
    """A parsed trial configuration; ``raw`` is the YAML as read (recorded in trial.json)."""

    name: str
    design: str
    source: Path | None
    raw: dict[str, Any]
    generator: GeneratorSettings
    statistics: StatisticsSettings
    segmentation: str = "own"
    workers: int = 2
    cache: Path | None = None
    executor: ExecutorSpec | None = None
    # paper design
    target: str | None = None
    real_cohort: Path | None = None
    phantoms: PhantomPool | None = None
    split: SplitSettings | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    model: ModelSettings | None = None
    # audit design
    reference: PopulationSource | None = None
    targets: tuple[PopulationSource, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))


TOP_KEYS = {"paper": ("name", "design", "description", "target", "real", "split", "sizes", "model", "generator",
                      "measurement", "statistics", "workers", "cache", "executor"),
            "audit": ("name", "design", "description", "model", "reference_population", "target_populations",
                      "generator", "measurement", "statistics", "workers", "cache", "executor")}


def parse_executor(value: Any, workers: int) -> ExecutorSpec | None:
    """``executor:`` of a trial config: ``local``, ``ray``, or a mapping with ``kind`` and optionally
    ``address`` (ray) and ``workers`` (default: the config's ``workers`` for local, 0 = every GPU or CPU
    slot of the cluster for ray). None when the config names none."""
    if value is None:
        return None
    d = {"kind": value} if isinstance(value, str) else _check_keys(value, "executor", ("kind", "address", "workers"),
                                                                   ("kind",))
    kind = _choice(d, "kind", "executor", KINDS, None)
    address = d.get("address")
    if address is not None and (kind != "ray" or not isinstance(address, str) or not address):
        raise TrialConfigError(ERR_TYPE.format(key="executor.address", kind="a Ray address (kind: ray)",
                                               value=address))
    n = _int(d, "workers", "executor", workers if kind == "local" else 0, 0)
    return ExecutorSpec(kind, n, address)


def parse_config(d: Any, *, base: Path, source: Path | None = None) -> TrialConfig:
    """A :class:`TrialConfig` from a mapping (paths relative to ``base``)."""
    if not isinstance(d, Mapping):
        raise TrialConfigError(ERR_TYPE.format(key="the config", kind="a mapping", value=d))
    design = _choice(d, "design", "", DESIGNS, None)
    d = _check_keys(d, "", TOP_KEYS[design], ("name", "design"))
    meas = _check_keys(d.get("measurement") or {}, "measurement", ("segmentation",))
    common = dict(name=str(d["name"]), design=design, source=source, raw=json_safe(d),
                  generator=GeneratorSettings.parse(d.get("generator"), base),
                  statistics=StatisticsSettings.parse(d.get("statistics")),
                  segmentation=_choice(meas, "segmentation", "measurement", SEGMENTATIONS, "own"),
                  workers=_int(d, "workers", "", 2, 0), cache=_path(d.get("cache"), "cache", base))
    common["executor"] = parse_executor(d.get("executor"), common["workers"] or 2)
    if design == "audit":
        _check_keys(d, "", TOP_KEYS[design], ("model", "reference_population", "target_populations"))
        tps = d["target_populations"]
        if not isinstance(tps, list) or not tps:
            raise TrialConfigError(ERR_TYPE.format(key="target_populations", kind="a non-empty list", value=tps))
        targets = tuple(PopulationSource.parse(t, f"target_populations[{i}]", base) for i, t in enumerate(tps))
        names = [t.name for t in targets] + [str((d["reference_population"] or {}).get("name"))]
        if len(set(names)) != len(names):
            raise TrialConfigError(f"population names must be unique, got {names}")
        return TrialConfig(**common, model=ModelSettings.parse(d["model"], base, allow_reference=False),
                           reference=PopulationSource.parse(d["reference_population"], "reference_population", base),
                           targets=targets)
    _check_keys(d, "", TOP_KEYS[design], ("target", "real", "split", "model"))
    target = _choice(d, "target", "", TARGETS, None)
    real = _check_keys(d["real"], "real", ("cohort", "phantoms"))
    if (real.get("cohort") is None) == (real.get("phantoms") is None):
        raise TrialConfigError("real needs exactly one of 'cohort' (a directory of real CT) and 'phantoms'")
    pool = None
    if real.get("phantoms") is not None:
        ph = _check_keys(real["phantoms"], "real.phantoms", ("population", "n", "seed"), ("population", "n"))
        pool = PhantomPool(population=_path(ph["population"], "real.phantoms.population", base),
                           n=_int(ph, "n", "real.phantoms", None, 3), seed=_int(ph, "seed", "real.phantoms", 0))
    sizes = _check_keys(d.get("sizes") or {}, "sizes", ("train", "id", "ood"))
    sizes = {k: _int(sizes, k, "sizes", v, 2) for k, v in (("train", 200), ("id", 75), ("ood", 75))}
    return TrialConfig(**common, target=target, real_cohort=_path(real.get("cohort"), "real.cohort", base),
                       phantoms=pool, split=SplitSettings.parse(d["split"]), sizes=sizes,
                       model=ModelSettings.parse(d["model"], base, allow_reference=True))


def trial_executor(cfg: TrialConfig, executor: ExecutorSpec | None = None) -> ExecutorSpec:
    """The executor a trial runs on: ``executor``, else the config's, else ``workers`` local processes."""
    return executor or cfg.executor or ExecutorSpec("local", cfg.workers or 2)


def load_config(path: str | Path) -> TrialConfig:
    """Read and check a trial YAML; TrialConfigError naming the file and the key otherwise."""
    path = Path(path)
    if not path.is_file():
        raise TrialConfigError(f"trial config {path} does not exist")
    try:
        d = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise TrialConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    try:
        return parse_config(d, base=path.resolve().parent, source=path.resolve())
    except TrialConfigError as err:
        raise TrialConfigError(f"{path}: {err}") from None
