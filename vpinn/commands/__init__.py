"""The command layer: ``python run.py <command> ...`` (or the ``vpinn`` script).

One module per subcommand (``solve`` trains a problem file and writes results; ``bench`` times
training steps per derivative method and batch size; ``memory`` measures peak memory across
batch sizes and rule sizes; ``compare`` runs optimisers side by side under one time budget; ``export`` evaluates a checkpoint on a
mesh, grid or points), plus the shared argument helpers (:mod:`.arguments`) and the
terminal side of training (:mod:`.terminal`: progress bars, Ctrl-C).  This is the only layer
that knows about terminals, signals and argument parsing.  User mistakes print one line
(``error: ...``) and exit with status 2; Ctrl-C during training saves a checkpoint and exits
with status 130.  Doubtful but valid inputs print one line (``warning: ...``) and go on.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from vpinn.commands import bench, compare, export, memory, solve
from vpinn.errors import VpinnError, VpinnWarning

#: command -> (help, module with DESCRIPTION, add_arguments and run)
COMMANDS = {
    "solve": ("train a problem file and write results", solve),
    "bench": ("time training steps across batch sizes and derivative methods", bench),
    "memory": ("peak memory across batch sizes and quadrature sizes", memory),
    "compare": ("optimisers side by side under one time budget", compare),
    "export": ("evaluate a checkpoint on a mesh, a grid or points and write the fields", export),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run.py", description="vpinn: variational PINN solver (Deep Ritz / deep energy method)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, module) in COMMANDS.items():
        module.add_arguments(commands.add_parser(name, help=help_text, description=module.DESCRIPTION,
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
        return COMMANDS[args.command][1].run(args)
    except VpinnError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
