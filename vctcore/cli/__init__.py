"""``vct`` command line: a thin argparse layer over vctcore. One module per subcommand, each with
``register(subparsers)``; bad arguments end with a one-line message and exit code 2."""
from __future__ import annotations

import argparse
import importlib
import sys

from vctcore.cli.common import CLIError

#: subcommands, in help order, and the vctcore.cli module of each (the module name by default)
COMMANDS = ("phantom", "measure", "train", "generate", "evaluate-generator", "train-downstream",
            "export-downstream", "predict", "trial", "report")
MODULES = {"evaluate-generator": "evaluate", "train-downstream": "downstream", "export-downstream": "downstream",
           "predict": "downstream"}  # vctcore.cli.evaluate also registers
# train-segmenter, train-segmenter-refiner and train-sex-classifier


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vct", description="Virtual clinical trials for radiology AI")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"vctcore.cli.{MODULES.get(name, name)}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CLIError as err:
        print(f"vct {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vct {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


__all__ = ["CLIError", "build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
