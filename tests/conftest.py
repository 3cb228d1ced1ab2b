"""Shared fixtures: small problem files and helpers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from vpinn.assemble import Assembly, assemble, build_trainer
from vpinn.calculus import value_and_gradient
from vpinn.evaluate import energy
from vpinn.physics.base import on_volume_rule
from vpinn.errors import ProblemFileError
from vpinn.problem import ProblemSpec, load_problem, parse_problem
from vpinn.train import Trainer
from vpinn.train.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parent.parent

SMALL_POISSON = textwrap.dedent(
    """
    name = "small"
    [domain]
    type = "box"
    [pde]
    type = "poisson"
    source = "auto"
    [[bc]]
    type = "dirichlet"
    on = "all"
    value = "0"
    [exact]
    u = "sin(pi*x)*sin(pi*y)*sin(pi*z)"
    [quadrature]
    cells = [8, 8, 8]
    order = 2
    [quadrature.finish]
    cells = [4, 4, 4]
    order = 3
    [quadrature.evaluation]
    cells = [5, 5, 5]
    order = 4
    [model]
    width = 16
    depth = 2
    [train]
    steps = 20
    batch = 256
    warmup = 5
    log_every = 5
    eval_every = 10
    checkpoint_every = 10
    chunk = 1000
    [output]
    grid = [5, 6, 7]
    """
)


def error_of(text: str) -> ProblemFileError:
    """The one-line error that problem-file ``text`` (named ``case.toml``) raises on loading."""
    with pytest.raises(ProblemFileError) as info:
        parse_problem(text, "case.toml")
    assert "\n" not in str(info.value)
    return info.value


def assembled(problem, overrides: dict | None = None, dtype: str = "float64") -> tuple[ProblemSpec, Assembly]:
    """The spec and assembly of a problem file (CPU; the network in float64 unless asked otherwise)."""
    spec = load_problem(problem, overrides)
    key = "train.phase[0].dtype" if spec.train.phase else "train.dtype"
    spec = load_problem(problem, {**(overrides or {}), key: dtype})
    return spec, assemble(spec, torch.device("cpu"))


def trainer_for(problem, overrides: dict | None = None, checkpoint: Path | None = None,
                max_time: float | None = None) -> Trainer:
    """A quiet trainer of a problem file (its spec's dtypes), saving checkpoints to ``checkpoint``."""
    spec = load_problem(problem, overrides)
    save = (lambda state: save_checkpoint(checkpoint, state)) if checkpoint else None
    return build_trainer(spec, assemble(spec, torch.device("cpu")), save=save, max_time=max_time)


def run_cli(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python run.py ARGUMENTS`` in ``cwd``, output captured as text."""
    return subprocess.run([sys.executable, str(REPO / "run.py"), *arguments], capture_output=True, text=True, cwd=cwd)


class Perturbed:
    """``u* + eps v`` as a trial function (value and Jacobian); ``v`` is one callable per
    component, differentiated by autograd."""

    def __init__(self, exact, eps: float, v):
        self.exact, self.eps, self.v = exact, eps, v

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``v`` (b, m) and its Jacobian (b, m, 3)."""
        pieces = [value_and_gradient(c, x) for c in self.v]
        return torch.stack([p[0] for p in pieces], 1), torch.stack([p[1] for p in pieces], 1)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u, g = self.exact(x)
        v, grad_v = self.parts(x)
        return u + self.eps * v, g + self.eps * grad_v

    def value(self, x: torch.Tensor) -> torch.Tensor:
        return self.exact.value(x) + self.eps * self.parts(x)[0]


def energy_of(assembly: Assembly, trial, chunk: int = 1 << 16) -> float:
    """The loss functional of ``trial`` with the volume term on the assembly's evaluation rule (float64)."""
    return energy(on_volume_rule(assembly.terms, assembly.evaluation_rule), trial, chunk, "cpu", torch.float64)


#: Lamé's hollow sphere of problems/lame_sphere.toml: pressure, radii, material, and the
#: constants of u_r = [(1 - 2 nu) A r + (1 + nu) B / (2 r^2)] / E
P, A_IN, B_OUT, E_SPHERE, NU = 1.0, 1.0, 4.0, 1000.0, 0.3
LAME_A = P * A_IN**3 / (B_OUT**3 - A_IN**3)
LAME_B = P * A_IN**3 * B_OUT**3 / (B_OUT**3 - A_IN**3)


def u_r(r):
    """Lamé's radial displacement of the bundled sphere."""
    return ((1 - 2 * NU) * LAME_A * r + (1 + NU) * LAME_B / (2 * r**2)) / E_SPHERE


def solve_bundled(directory: Path, name: str, overrides: dict) -> tuple[Path, dict]:
    """Solve the bundled ``problems/<name>.toml`` with ``overrides`` into ``directory``, quietly;
    returns the directory and the summary."""
    from vpinn.commands.solve import SolveOptions, solve

    summary = solve(REPO / "problems" / f"{name}.toml",
                    SolveOptions(output=str(directory), progress=False, overrides=overrides), echo=lambda line: None)
    return directory, summary


def central_differences(function, x: torch.Tensor, step: float = 1e-6) -> torch.Tensor:
    """``d function_k / d x_j`` (b, m, 3) by central differences of ``function`` (b, 3) -> (b, m):
    an independent check of a Jacobian (float64: truncation and round-off errors about 1e-10)."""
    columns = []
    with torch.no_grad():
        for axis in range(3):
            shift = torch.zeros(3, dtype=x.dtype)
            shift[axis] = step
            columns.append((function(x + shift) - function(x - shift)) / (2 * step))
    return torch.stack(columns, dim=2)


@pytest.fixture
def small_problem(tmp_path: Path) -> Path:
    """A tiny Poisson problem file (seconds to train)."""
    path = tmp_path / "small.toml"
    path.write_text(SMALL_POISSON)
    return path
