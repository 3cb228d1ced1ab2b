"""Command line: ``python run.py <command> ...`` (or the ``vpinn`` script).

``solve`` trains a problem file and writes results; ``bench`` times training steps per derivative
method and batch size; ``memory`` measures peak memory across batch sizes and rule sizes.
User mistakes print one line (``error: ...``) and exit with status 2; Ctrl-C during training
saves a checkpoint and exits with status 130.  Doubtful but valid inputs print one line
(``warning: ...``) and go on.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from vpinn import bench, memory
from vpinn.commandline import add_common_arguments, default_problem, positive_seconds
from vpinn.errors import VpinnError, VpinnWarning


def add_solve_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in the output directory")
    parser.add_argument("--max-time", type=positive_seconds, metavar="SECONDS",
                        help="wall-clock budget for training (overrides train.max_time)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_solve(args: argparse.Namespace) -> int:
    from vpinn.device import keep_freed_memory
    from vpinn.solve import SolveOptions, solve

    keep_freed_memory()
    options = SolveOptions(args.resume, args.max_time, args.device, args.out, not args.quiet, dict(args.settings))
    summary = solve(args.problem or default_problem(), options)
    return 130 if summary.get("status") == "interrupted" else 0


#: command -> (help, description, add_arguments, run)
COMMANDS = {
    "solve": ("train a problem file and write results",
              "Train the problem and write summary.json, history.csv, plots, solution.vtu and a "
              "checkpoint to results/<name>/.", add_solve_arguments, run_solve),
    "bench": ("time training steps across batch sizes and derivative methods", bench.DESCRIPTION,
              bench.add_arguments, bench.run),
    "memory": ("peak memory across batch sizes and quadrature sizes", memory.DESCRIPTION,
               memory.add_arguments, memory.run),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run.py", description="vpinn: variational PINN solver (Deep Ritz / deep energy method)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, description, add_arguments, _) in COMMANDS.items():
        add_arguments(commands.add_parser(name, help=help_text, description=description,
                                          formatter_class=argparse.RawDescriptionHelpFormatter))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        usual = warnings.showwarning

        def show(message, category, *rest, **keywords) -> None:
            """A :class:`VpinnWarning` as one line ``warning: ...``; other warnings as usual."""
            if issubclass(category, VpinnWarning):
                print(f"warning: {message}", file=sys.stderr)
            else:
                usual(message, category, *rest, **keywords)

        warnings.showwarning = show
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return COMMANDS[args.command][3](args)
    except VpinnError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
