"""The ``carbonsched`` command line: parse, call the library, format. No logic lives here.

One module per command noun, each with ``register(subparsers, common_parent)`` adding its
parser(s) with ``parents=[common_parent]`` and ``set_defaults(func=...)``; they are listed in
``COMMAND_MODULES`` (help shows them in that order). ``_common.py`` holds what they share.
Library modules are imported inside the command functions, so ``carbonsched plan`` loads only
what planning needs.

Exit codes: 0 success; 1 internal or data error; 2 bad input (job file, flags, constraints,
infeasible plan); 130 interrupted.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from carbonsched import __version__
from carbonsched.errors import CarbonschedError

COMMAND_MODULES: list[str] = [
    "carbonsched.cli.plan", "carbonsched.cli.forecast", "carbonsched.cli.backtest", "carbonsched.cli.regions", "carbonsched.cli.jobs",
    "carbonsched.cli.export",
    "carbonsched.cli.track", "carbonsched.cli.ledger", "carbonsched.cli.catalog", "carbonsched.cli.policy",
    "carbonsched.cli.db", "carbonsched.cli.token", "carbonsched.cli.server", "carbonsched.cli.completion",
]


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2), like every other carbonsched error."""

    def error(self, message: str):
        self.exit(2, f"carbonsched: error: {message} (see `{self.prog} --help`)\n")


def build_parser(modules: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser with the commands of ``modules`` (default: all of ``COMMAND_MODULES``)."""
    parser = Parser(
        prog="carbonsched",
        description="Carbon-aware placement for ML training: rank where (cloud, region, GPU) and when to run "
                    "by forecast carbon, cost and hardware efficiency.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="start with: carbonsched plan --gpu A100 --gpus 8 --hours 12 --max-delay 24h\n"
               "shell completion: carbonsched completion bash|zsh (see `carbonsched completion --help`)",
    )
    parser.add_argument("--version", action="version", version=f"carbonsched {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for entry in modules or COMMAND_MODULES:
        module, _, function = entry.partition(":")  # "module" or "module:register_function"
        getattr(importlib.import_module(module), function or "register")(sub, common)
    return parser


def main(argv: list[str] | None = None, modules: list[str] | None = None) -> int:
    """Run one command; ``modules`` limits the parser to those command modules (an entry point that
    needs one command, like the tracker every launched job runs under, skips the others' imports)."""
    parser = build_parser(modules)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except CarbonschedError as exc:
        if args.debug:
            raise
        from carbonsched.redact import redact  # only on the error path

        print(f"carbonsched: error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("carbonsched: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `carbonsched plan ... | head`
        return 0
    except OSError as exc:  # a path the user gave cannot be read or written
        if args.debug:
            raise
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"carbonsched: error: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
