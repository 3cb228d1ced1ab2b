"""Shared fixtures: small problem files and helpers."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

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


def solve_bundled(directory: Path, name: str, overrides: dict) -> tuple[Path, dict]:
    """Solve the bundled ``problems/<name>.toml`` with ``overrides`` into ``directory``, quietly;
    returns the directory and the summary."""
    from vpinn.solve import SolveOptions, solve

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


@pytest.fixture(autouse=True)
def _deterministic_threads():
    """Fix the thread count so float sums are reproducible within a test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
