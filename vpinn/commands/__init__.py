"""The command layer: ``python run.py <command> ...`` (or the ``vpinn`` script).

One module per subcommand (``solve`` trains a problem file and writes results; ``bench`` times
training steps per derivative method and batch size; ``memory`` measures peak memory across
batch sizes and rule sizes; ``compare`` runs optimisers side by side under one time budget; ``export`` evaluates a checkpoint on a
mesh, grid or points; ``variance`` measures each sampler's
gradient noise; ``batches`` compares batch sizes and samplers under one time budget; ``scale`` times data-parallel
training under ``torchrun`` across process counts and gradient compressions), plus the shared argument helpers (:mod:`.arguments`) and the
terminal side of training (:mod:`.terminal`: progress bars, Ctrl-C, SIGTERM) and the results
directory's lock (:mod:`.results`).  This is the only layer that knows about terminals, signals
and argument parsing.  User mistakes (a problem file, a flag, a checkpoint) print one line
(``error: ...``) and exit with status 2; an operating-system error (a full disk, a read-only
directory) prints one line naming the path and the reason, and running out of memory one line
with the allocation that failed, both with status 1; Ctrl-C or SIGTERM during training saves a
checkpoint and exits with status 130 or 143.  Doubtful but valid inputs print one line
(``warning: ...``) and go on.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import warnings

import torch

from vpinn.commands import batches, bench, compare, export, memory, scale, solve, variance
from vpinn.distributed.launch import launch_rank
from vpinn.errors import VpinnError, VpinnWarning

#: command -> (help, module with DESCRIPTION, add_arguments and run)
COMMANDS = {
    "solve": ("train a problem file and write results", solve),
    "bench": ("time training steps across batch sizes and derivative methods", bench),
    "memory": ("peak memory across batch sizes and quadrature sizes", memory),
    "compare": ("optimisers side by side under one time budget", compare),
    "export": ("evaluate a checkpoint on a mesh, a grid or points and write the fields", export),
    "variance": ("gradient noise of every sampler at one network state", variance),
    "batches": ("what each batch size and sampler buys under one time budget", batches),
    "scale": ("data-parallel training across process counts and gradient compressions", scale),
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="run.py", description="vpinn: variational PINN solver (Deep Ritz / deep energy method)")
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
        if launch_rank() == 0:  # under torchrun every rank meets the same error: one line, from rank 0
            print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # a second stop signal, or Ctrl-C outside training
        number = getattr(err, "signum", signal.SIGINT)
        print(f"interrupted ({signal.Signals(number).name})", file=sys.stderr)
        return 128 + number
    except OSError as err:  # the last resort: the environment failed (disk full, permissions, ...)
        print(f"error: {os_error(err)}", file=sys.stderr)
        return 1
    except (MemoryError, RuntimeError) as err:
        if not out_of_memory(err):
            raise  # a bug: keep its traceback
        wanted = re.search(r"tried to allocate ([0-9.]+ ?[A-Za-z]*)", str(err))
        print(f"error: out of memory{f' (it tried to allocate {wanted.group(1)})' if wanted else ''}; lower train.batch "
              "or train.chunk, or let train.memory_limit choose the batch", file=sys.stderr)
        return 1


def out_of_memory(err: BaseException) -> bool:
    """True for an allocation failure: Python's, a CUDA device's, or torch's CPU allocator's."""
    return isinstance(err, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in str(err)


def os_error(err: OSError) -> str:
    """One line naming the path(s) and the operating system's reason."""
    reason = err.strerror or str(err) or type(err).__name__
    paths = [str(p) for p in (err.filename, err.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


class Parser(argparse.ArgumentParser):
    """argparse, with a mistake in the arguments reported on one line like every other user error."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")
