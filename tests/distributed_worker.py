"""One rank of the two-process runs of ``tests/test_distributed.py``, started by ``torchrun``.

``python -m torch.distributed.run --standalone --nproc_per_node=2 tests/distributed_worker.py PROBLEM PHASES OUT``
runs, on every rank, in one process group (PHASES: a problem file with ``[[train.phase]]``):

1. the first ``STEPS`` of ``2 STEPS`` float64 Adam steps at a per-rank batch of ``BATCH``, then a
   stop as after Ctrl-C (rank 0 writes ``two.pt``);
2. a run with a time limit on rank 1 only (each rank writes ``time_<rank>.json``);
3. ``COMPRESSION_STEPS`` steps for each compression hook (rank 0 writes ``<name>.json``);
4. a long run under the command layer's Ctrl-C handler: once it is training, rank 1 writes its
   process id to ``ready``, and the test sends SIGINT to that rank alone (each rank writes
   ``interrupt_<rank>.json``, rank 0 the checkpoint ``interrupted.pt``);
5. Adam, then ENGD, MSQN and L-BFGS steps on exact full-rule gradients and Gram matrices summed
   over the ranks (rank 0 writes ``second_order.pt``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from vpinn.assemble import assemble, build_trainer
from vpinn.atomic import write_text
from vpinn.commands.terminal import TerminalObserver
from vpinn.distributed import ProcessGroup, finish, start
from vpinn.problem import load_problem
from vpinn.train import Observer
from vpinn.train.checkpoint import save_checkpoint

STEPS, BATCH = 12, 128
COMPRESSION_STEPS = 40
EXACT = {"train.batch": BATCH, "train.dtype": "float64", "train.steps": 2 * STEPS, "train.checkpoint_every": 1000}
TIMED = {"train.steps": 10**6, "train.eval_every": 10**6, "train.checkpoint_every": 10**6, "train.log_every": 10**6}
#: a few steps of every optimiser (float64), after a short Adam start
SECOND_ORDER = {"train.batch": BATCH, "train.phase": [
    {"optimizer": "adam", "steps": 10, "lr": 1e-2, "warmup": 2, "dtype": "float64"},
    {"optimizer": "engd", "steps": 3}, {"optimizer": "msqn", "steps": 3}, {"optimizer": "lbfgs", "steps": 3}]}
COMPRESSED = {"model.width": 32, "train.steps": COMPRESSION_STEPS, "train.lr": 1e-2, "train.log_every": 5,
              "train.eval_every": 1000, "train.checkpoint_every": 1000}


class StopAfter(Observer):
    """Asks the loop to stop (as Ctrl-C does) after ``steps`` steps."""

    def __init__(self, steps: int):
        self.steps, self.seen = steps, 0

    def stepped(self, row: dict | None) -> None:
        self.seen += 1

    def stop_requested(self) -> str | None:
        return "interrupted" if self.seen >= self.steps else None


class ReportsReady(TerminalObserver):
    """Ctrl-C handling as in ``run.py solve``; after the first step, on rank 1, the process id
    goes to ``path``."""

    def __init__(self, path: Path | None):
        super().__init__(progress=False)
        self.path = path

    def stepped(self, row: dict | None) -> None:
        super().stepped(row)
        if self.path is not None and not self.path.exists():
            write_text(self.path, str(os.getpid()))


def trainer(problem: str, overrides: dict, group, **options):
    spec = load_problem(problem, overrides)
    return build_trainer(spec, assemble(spec, torch.device("cpu"), group), **options)


def main(problem: str, phases: str, out: Path) -> None:
    group = start(torch.device("cpu"))
    try:
        exact = trainer(problem, EXACT, group, observer=StopAfter(STEPS))
        exact.run()
        if group.is_root:
            save_checkpoint(out / "two.pt", {**exact.state_dict(), "world_size": group.size})
        timed = trainer(problem, TIMED, group, max_time=1.5 if group.rank == 1 else None).run()
        (out / f"time_{group.rank}.json").write_text(json.dumps({"status": timed.status, "steps": timed.steps}))
        for name in ("fp16", "bf16", "powersgd", "dither"):
            compressed = ProcessGroup(group.control, name, bits=6, seed=0)
            run = trainer(problem, COMPRESSED, compressed)
            result = run.run()
            if group.is_root:
                parameters = sum(p.numel() for p in run.network.parameters())
                tensors = len(list(run.network.parameters()))
                (out / f"{name}.json").write_text(json.dumps({"history": result.history, "parameters": parameters,
                                                              "tensors": tensors}))
        save = (lambda state: save_checkpoint(out / "interrupted.pt", {**state, "world_size": group.size})) \
            if group.is_root else None
        with ReportsReady(out / "ready" if group.rank == 1 else None) as observer:
            stopped = trainer(problem, TIMED, group, observer=observer, save=save).run()
        (out / f"interrupt_{group.rank}.json").write_text(json.dumps({"status": stopped.status, "steps": stopped.steps}))
        second = trainer(phases, SECOND_ORDER, group)
        second.run()
        if group.is_root:
            save_checkpoint(out / "second_order.pt", {**second.state_dict(), "world_size": group.size})
    finally:
        finish(group)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
