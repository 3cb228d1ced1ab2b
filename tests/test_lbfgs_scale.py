"""The L-BFGS finish does not depend on the loss's units, and resumes on the same objective.

torch's L-BFGS keeps a curvature pair only if y.s > 1e-10, an absolute threshold; the trainer
therefore hands it the loss divided by its magnitude at the start of the phase.  Multiplying
every energy density by 1e-7 (the same problem in other units) must then give the same iterates.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vpinn.problem import load_problem
from vpinn.setup import build_setup
from vpinn.train import Trainer


def finisher(problem, factor: float = 1.0, iterations: int = 12, checkpoint=None) -> Trainer:
    """A trainer that runs only the L-BFGS finish, with every energy density times ``factor``."""
    spec = load_problem(problem, {"train.steps": 0, "train.lbfgs.iterations": iterations, "train.lbfgs.tolerance": 0.0})
    setup = build_setup(spec, torch.device("cpu"))
    setup.physics.terms[:] = [dataclasses.replace(t, density=lambda b, u, g, d=t.density: factor * d(b, u, g))
                              for t in setup.physics.terms]
    return Trainer(setup, checkpoint, progress=False)


def test_lbfgs_iterates_do_not_depend_on_the_loss_units(small_problem):
    reference, scaled = finisher(small_problem), finisher(small_problem, 1e-7)
    reference.run()
    scaled.run()
    assert scaled.iteration == reference.iteration == 12
    assert scaled.lbfgs_scale == pytest.approx(1e7 * reference.lbfgs_scale, rel=1e-12)
    for a, b in zip(reference.setup.field.parameters(), scaled.setup.field.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
    assert scaled.history[-1]["loss"] == pytest.approx(1e-7 * reference.history[-1]["loss"], rel=1e-9)


def test_resumed_finish_keeps_its_normalisation(small_problem, tmp_path):
    """5 iterations, a checkpoint, 7 more after resuming: the same weights as 12 in one go."""
    whole = finisher(small_problem, 1e-7)
    whole.run()
    finisher(small_problem, 1e-7, iterations=5, checkpoint=tmp_path / "c.pt").run()
    resumed = finisher(small_problem, 1e-7, checkpoint=tmp_path / "c.pt")
    resumed.resume(tmp_path / "c.pt")
    assert resumed.iteration == 5 and resumed.lbfgs_scale == whole.lbfgs_scale
    resumed.run()
    for a, b in zip(whole.setup.field.parameters(), resumed.setup.field.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)
