"""Command line: ``python run.py <command> ...`` (or the ``vpinn`` script).

Commands: ``solve`` trains a problem file and writes results; ``bench`` times training steps
across batch sizes.  User mistakes print one line (``error: ...``) and exit with status 2; Ctrl-C
during training saves a checkpoint and exits with status 130.  Doubtful inputs print one line
(``warning: ...``) and go on.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
import warnings
from pathlib import Path

from vpinn.errors import VpinnError, VpinnWarning

DEFAULT_PROBLEM = "problems/poisson_cube.toml"


def default_problem() -> str:
    """The bundled default problem: relative to the working directory, else to the checkout."""
    if Path(DEFAULT_PROBLEM).exists():
        return DEFAULT_PROBLEM
    return str(Path(__file__).resolve().parent.parent / DEFAULT_PROBLEM)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def parse_setting(text: str) -> tuple[str, object]:
    """``"train.steps=500"`` -> ``("train.steps", 500)``; the value is read as TOML, else as a string."""
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, e.g. train.steps=500, not {text!r}")
    try:
        parsed = tomllib.loads(f"value = {value}")["value"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return key.strip(), parsed


def add_setting_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="settings", action="append", type=parse_setting, default=[], metavar="KEY=VALUE",
                        help="override a problem-file key, e.g. --set train.steps=500 (repeatable; validated like the file)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run.py", description="vpinn: variational PINN solver (Deep Ritz / deep energy method)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    solve = commands.add_parser("solve", help="train a problem file and write results",
                                description="Train the problem and write summary.json, history.csv, plots, "
                                            "solution.vtu and a checkpoint to results/<name>/.")
    solve.add_argument("problem", nargs="?", help=f"problem file (default: {DEFAULT_PROBLEM})")
    solve.add_argument("--resume", action="store_true", help="continue from the checkpoint in the output directory")
    solve.add_argument("--max-time", type=_positive_seconds, metavar="SECONDS",
                       help="wall-clock budget for training (overrides train.max_time)")
    solve.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    solve.add_argument("--out", help="output directory (default: results/<name>)")
    solve.add_argument("--quiet", action="store_true", help="no progress bar")
    add_setting_argument(solve)

    from vpinn.bench import add_arguments as add_bench_arguments

    bench = commands.add_parser("bench", help="time training steps across batch sizes",
                                description="Median time per training step, points per second and peak memory, "
                                            "for each derivative method and batch size.")
    add_bench_arguments(bench)
    add_setting_argument(bench)
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
        if args.command == "solve":
            from vpinn.device import keep_freed_memory
            from vpinn.solve import SolveOptions, solve

            keep_freed_memory()
            options = SolveOptions(args.resume, args.max_time, args.device, args.out, not args.quiet, dict(args.settings))
            summary = solve(args.problem or default_problem(), options)
            return 130 if summary.get("status") == "interrupted" else 0
        from vpinn.bench import run as run_bench

        return run_bench(args)
    except VpinnError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
