"""The L-BFGS finish does not depend on the loss's units, and resumes on the same objective.

torch's L-BFGS keeps a curvature pair only if y.s > 1e-10, an absolute threshold; the trainer
therefore hands it the loss divided by its magnitude at the start of the phase.  Multiplying
every energy density by 1e-7 (the same problem in other units) must then give the same iterates.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vpinn.assemble import assemble, build_trainer
from vpinn.problem import load_problem
from vpinn.train import Trainer
from vpinn.train.checkpoint import load_checkpoint, save_checkpoint


def finisher(problem, factor: float = 1.0, iterations: int = 12, checkpoint=None) -> Trainer:
    """A trainer that runs only the L-BFGS finish, with every energy density times ``factor``."""
    spec = load_problem(problem, {"train.steps": 0, "train.lbfgs.iterations": iterations, "train.lbfgs.tolerance": 0.0})
    assembly = assemble(spec, torch.device("cpu"))
    assembly.terms[:] = [dataclasses.replace(t, form=dataclasses.replace(
        t.form, density=lambda b, u, g, d=t.form.density: factor * d(b, u, g))) for t in assembly.terms]
    save = (lambda state: save_checkpoint(checkpoint, state)) if checkpoint else None
    return build_trainer(spec, assembly, save=save)


def scale_of(trainer: Trainer) -> float:
    return trainer.phases[1].optimizer.objective.scale


def test_lbfgs_iterates_do_not_depend_on_the_loss_units(small_problem):
    reference, scaled = finisher(small_problem), finisher(small_problem, 1e-7)
    reference.run()
    scaled.run()
    assert scaled.done[1] == reference.done[1] == 12
    assert scale_of(scaled) == pytest.approx(1e7 * scale_of(reference), rel=1e-12)
    for a, b in zip(reference.network.parameters(), scaled.network.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
    assert scaled.history[-1]["loss"] == pytest.approx(1e-7 * reference.history[-1]["loss"], rel=1e-9)


def test_resumed_finish_keeps_its_normalisation(small_problem, tmp_path):
    """5 iterations, a checkpoint, 7 more after resuming: the same weights as 12 in one go."""
    whole = finisher(small_problem, 1e-7)
    whole.run()
    finisher(small_problem, 1e-7, iterations=5, checkpoint=tmp_path / "c.pt").run()
    resumed = finisher(small_problem, 1e-7, checkpoint=tmp_path / "c.pt")
    resumed.load_state_dict(load_checkpoint(tmp_path / "c.pt"))
    assert resumed.done[1] == 5 and scale_of(resumed) == scale_of(whole)
    resumed.run()
    for a, b in zip(whole.network.parameters(), resumed.network.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)
