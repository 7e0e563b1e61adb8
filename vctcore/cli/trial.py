"""``vct trial``: run a virtual clinical trial from its configuration (resumable).

    vct trial --config TRIAL.yaml --out DIR [--cache DIR] [--fail-on significant|inconclusive] [--quiet]
              [--executor local|ray] [--ray-address ADDR] [--workers N]

Exit codes: 0 done; 1 a population's synthetic verdict is as bad as ``--fail-on`` or worse (a release
gate for a vendor's CI); 2 bad input (one line on stderr, nothing written is lost).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from vctcore.cli.common import CLIError, add_executor_args, executor_spec, progress_bar

if TYPE_CHECKING:
    from vctcore.executors import ExecutorSpec
    from vctcore.trial.config import TrialConfig

FAIL_ON = ("significant", "inconclusive")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trial", help="run a virtual clinical trial (paper or audit design) from a YAML config",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="trial YAML (e.g. assets/trials/paper_bfp.yaml)")
    p.add_argument("--out", required=True, help="trial directory to write (rerun the same command to resume)")
    p.add_argument("--cache", default=None, help="patient store (default: the config's cache, else workspace/cache)")
    p.add_argument("--fail-on", choices=FAIL_ON, default=None,
                   help="exit 1 when a population's synthetic verdict is this bad or worse")
    add_executor_args(p, None, "local processes or Ray actors building phantoms and measuring (and, on Ray, "
                               "making patients); default: the config's workers (ray: every GPU or CPU slot)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


class _Bars:
    """One progress bar per trial stage, on stderr (tqdm shows the rate and ETA)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet, self.stage, self.update, self.close = quiet, None, None, lambda: None

    def __call__(self, done: int, total: int, message: str = "") -> None:
        from vctcore.progress import split_stage

        stage, label = split_stage(message)
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.update, self.close = progress_bar(total, stage, "item", self.quiet)
        self.update(done, total, label)


def _finite(x: object) -> bool:
    """A number that is neither None nor NaN."""
    return isinstance(x, (int, float)) and math.isfinite(x)


def _print_summary(result) -> None:
    s = result.summary
    print(f"trial {s['name']} ({s['design']}, task {s.get('task')}): {result.root}")
    shown = [v for v in s.get("verdicts", []) if v.get("n")]
    width = max([12, *(len(str(v["population"])) for v in shown)])
    for v in shown:
        dist = f" [attributes of {v['attr_dist']}]" if v.get("attr_dist") not in (None, v.get("population")) else ""
        diff = (f"  vs reference {v['difference']:+.2f} [{v['difference_low']:.2f}, {v['difference_high']:.2f}], "
                f"p {v['p_degradation']:.3f}") if _finite(v.get("difference")) else ""
        print(f"  {v['population']:<{width}} {v['sample_type']:<18} n={v['n']:<4} MAE {v['mae']:.2f} "
              f"[{v['mae_low']:.2f}, {v['mae_high']:.2f}] pp  {v['verdict']}{dist}{diff}")
    if "degraded_populations" in s:
        print("  degraded populations: " + (", ".join(s["degraded_populations"]) or "none"))
    for stype, feats in (s.get("error_drivers") or {}).items():
        print(f"  attributes driving the error ({stype}): {', '.join(feats)}")
    for w in s.get("warnings", []):
        print(f"  warning: {w}")


def _executor(args: argparse.Namespace, cfg: TrialConfig) -> ExecutorSpec:
    """The config's executor with ``--executor``/``--ray-address``/``--workers`` applied over it."""
    from vctcore.trial.config import trial_executor

    base = trial_executor(cfg)
    kind = args.executor or ("ray" if args.ray_address else base.kind)
    workers = args.workers if args.workers is not None else (base.workers if kind == base.kind else 0)
    address = args.ray_address or (base.address if kind == base.kind else None)
    return executor_spec(argparse.Namespace(executor=kind, ray_address=address, workers=workers))


def run(args: argparse.Namespace) -> int:
    from vctcore.trial.config import TrialConfigError, load_config

    try:  # a bad config is refused before the trial's modules (torch, scikit-learn) are imported, so it comes at once
        cfg = load_config(args.config)
    except TrialConfigError as err:
        raise CLIError(str(err)) from None
    spec = _executor(args, cfg)

    from vctcore.downstream import DownstreamError
    from vctcore.executors import ExecutorError
    from vctcore.models.checkpoint import CheckpointError
    from vctcore.population import SpecError
    from vctcore.trial.paper import PaperTrialError
    from vctcore.trial.populations import PopulationError
    from vctcore.trial.run import TrialError, run_trial
    from vctcore.trial.split import SplitError
    from vctcore.trial.stats import fails

    bars = _Bars(args.quiet)
    try:
        result = run_trial(cfg, Path(args.out), progress=bars, cache=args.cache, executor=spec)
    except (TrialConfigError, SplitError, PopulationError, DownstreamError, PaperTrialError, TrialError,
            CheckpointError, SpecError, ExecutorError) as err:
        raise CLIError(str(err)) from None
    finally:
        bars.close()
    _print_summary(result)
    if args.fail_on:
        bad = [f"{v['population']} ({v['verdict']})" for v in result.summary.get("verdicts", [])
               if v.get("sample_type") == "synthetic" and v.get("verdict") and fails(v["verdict"], args.fail_on)]
        if bad:
            print(f"vct trial: --fail-on {args.fail_on}: {', '.join(bad)}", file=sys.stderr)
            return 1
    return 0
