"""Solves in fresh processes, for the commands that compare settings under one wall-time budget
(``compare``, ``batches``) or across process counts (``scale``): each setting is ``solve`` with
``--set`` overrides (and ``--max-time``), so no setting inherits another's warm caches, allocator
state or memory peak; ``nproc > 1`` starts it under ``torchrun``.  ``--overwrite``: each setting's
directory belongs to the comparison, and a rerun replaces it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from vpinn.commands.arguments import default_problem
from vpinn.errors import VpinnError
from vpinn.problem import ProblemSpec, load_problem


def inline(value) -> str:
    """``value`` (dicts, lists, strings, numbers) as TOML inline text, for ``--set``."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} = {inline(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(inline(item) for item in value) + "]"
    return json.dumps(value) if isinstance(value, str) else repr(value).lower() if isinstance(value, bool) else repr(value)


def load_with_exact(args, command: str) -> tuple[str, dict, ProblemSpec]:
    """The problem file, its ``--set`` settings and spec of a comparing ``command``, refused in one
    line if the problem has no ``[exact]`` solution to measure errors against."""
    problem = args.problem or default_problem()
    settings = dict(args.settings)
    spec = load_problem(problem, settings)
    if spec.exact is None:
        raise VpinnError(f"{command}: {spec.name} has no [exact] solution to measure the errors against")
    return problem, settings, spec


def run_solve(problem: str, overrides: dict, out: Path, budget: float | None, device: str | None, *, nproc: int = 1,
              threads: int | None = None) -> dict:
    """Solve ``problem`` with ``overrides`` into ``out`` for ``budget`` seconds of training (None:
    the file's), in ``nproc`` processes (``torchrun --standalone``) of ``threads`` CPU threads
    each (None: torch's default); the summary, the history rows and the curve of (seconds,
    relative L2) at evaluated rows."""
    arguments = [item for key, value in overrides.items() for item in ("--set", f"{key}={inline(value)}")]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] \
        if nproc > 1 else [sys.executable]
    command = [*launcher, "-m", "vpinn.commands", "solve", problem, "--quiet", "--overwrite", "--out", str(out),
               *(["--max-time", repr(budget)] if budget else []), *(["--device", device] if device else []), *arguments]
    environment = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise VpinnError(f"the run in {out} failed: {lines[-1] if lines else 'no output'}")
    summary = json.loads((out / "summary.json").read_text())
    with open(out / "history.csv") as handle:
        history = list(csv.DictReader(handle))
    curve = [(float(r["elapsed_s"]), float(r["rel_l2"])) for r in history if r.get("rel_l2")]
    return {"summary": summary, "history": history, "curve": curve}
