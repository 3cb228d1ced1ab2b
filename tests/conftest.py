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
