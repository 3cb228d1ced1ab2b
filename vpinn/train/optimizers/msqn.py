"""The stochastic multi-secant quasi-Newton step (``msqn``).

From the last m pairs ``s_k = theta_{k+1} - theta_k`` and ``y_k = g_{k+1} - g_k`` (both gradients
measured on the same minibatch, so that ``y`` holds curvature, not sampling noise), the inverse
Hessian estimate ``H`` solves the regularised least-squares problem

    min_H |H Y - S|^2 + lam |H - gamma I|^2,   H = gamma I + (S - gamma Y)(Y^T Y + lam I)^-1 Y^T,

with ``gamma = s.y / y.y`` of the newest pair (Barzilai-Borwein).  Noise makes ``H Y = S``
inconsistent; ``lam`` (relative to ``tr(Y^T Y)/m``) keeps the fit stable.  ``H`` is applied in
O(m p) memory and time, never formed.  Safeguards: a pair with ``s.y <= 0`` (no positive
curvature along s) is not stored; a direction that is not a descent direction (``g.Hg <= 0``)
falls back to the scaled gradient ``gamma g``; a step that does not lower the minibatch loss
(Armijo) is halved, up to ten times, then rejected.  On a noise-free quadratic with ``m >= p``
independent pairs ``H`` is the exact inverse Hessian, so the iteration ends in at most ``p + 1``
steps.
"""

from __future__ import annotations

import torch

from vpinn.physics.base import integrand
from vpinn.train.batching import fit
from vpinn.train.estimate import flat_gradient, full_loss_backward
from vpinn.train.optimizers import StepReport, TrainingProblem


class MultiSecant:
    """The inverse-Hessian estimate ``H`` of the last ``memory`` secant pairs (see the module docstring)."""

    def __init__(self, memory: int, regularisation: float):
        self.memory, self.regularisation = memory, regularisation
        self.s: list[torch.Tensor] = []
        self.y: list[torch.Tensor] = []

    def add(self, s: torch.Tensor, y: torch.Tensor) -> bool:
        """Keep the pair if it shows positive curvature (``s.y > 0``); the oldest goes beyond ``memory``."""
        if not float(s @ y) > 1e-12 * float(s.norm() * y.norm()):
            return False
        self.s, self.y = (self.s + [s])[-self.memory:], (self.y + [y])[-self.memory:]
        return True

    @property
    def gamma(self) -> float:
        """``s.y / y.y`` of the newest pair: the scale of ``H`` off the pairs' span."""
        s, y = self.s[-1], self.y[-1]
        return float(s @ y) / float(y @ y)

    def apply(self, gradient: torch.Tensor) -> torch.Tensor:
        """``H g`` (needs at least one pair)."""
        s, y, gamma = torch.stack(self.s, 1), torch.stack(self.y, 1), self.gamma
        normal = y.T @ y
        normal.diagonal().add_(self.regularisation * float(normal.diagonal().mean()))
        return gamma * gradient + (s - gamma * y) @ torch.linalg.solve(normal, y.T @ gradient)

    def state_dict(self) -> dict:
        return {"s": list(self.s), "y": list(self.y)}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        """Continue from a state of :meth:`state_dict` (read on the CPU), on ``device``."""
        self.s, self.y = [t.to(device) for t in state["s"]], [t.to(device) for t in state["y"]]


class Msqn:
    """Multi-secant quasi-Newton steps on minibatches (``batch > 0``) or exact gradients (0).

    Parameters
    ----------
    problem:
        The parameters, terms and samplers.
    dtype, steps:
        The phase's dtype and number of steps.
    batch:
        Volume points per minibatch (boundary terms use their own batch sizes); 0: whole rules.
    memory:
        Number m of secant pairs kept.
    lr:
        The step ``theta <- theta - lr H g`` before any halving.
    regularisation:
        ``lam / (tr(Y^T Y)/m)``.
    """

    def __init__(self, problem: TrainingProblem, *, dtype: torch.dtype, steps: int, batch: int = 0, memory: int = 10,
                 lr: float = 1.0, regularisation: float = 1e-6):
        self.problem, self.dtype, self.batch, self.lr = problem, dtype, batch, lr
        self.secant = MultiSecant(memory, regularisation)
        self.passes = 0.0

    def _flat(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.problem.parameters])

    def _set(self, flat: torch.Tensor) -> None:
        offset = 0
        with torch.no_grad():
            for p in self.problem.parameters:
                p.copy_(flat[offset:offset + p.numel()].view_as(p))
                offset += p.numel()

    def _draw(self) -> list:
        """This step's minibatch: (term, points, factor) per term, or None for exact sums."""
        if self.batch == 0:
            return None
        problem, drawn = self.problem, []
        for k, (term, sampler) in enumerate(zip(problem.terms, problem.samplers)):
            index, factor = sampler.sample(fit(self.batch if k == 0 else term.batch, sampler))
            drawn.append((term, term.rule.take(index, self.dtype), factor))
        return drawn

    def _loss_and_gradient(self, drawn) -> tuple[float, torch.Tensor]:
        """The loss and its flat gradient, on the drawn minibatch (the same at both ends of a pair)."""
        problem = self.problem
        for p in problem.parameters:
            p.grad = None
        if drawn is None:
            loss = float(full_loss_backward(problem.terms, problem.trial, problem.chunk, problem.device, self.dtype))
            self.passes += 1
        else:
            total = sum((factor * batch.weights * integrand(term.form, problem.trial, batch)).sum()
                        for term, batch, factor in drawn)
            total.backward()
            loss = float(total.detach())
            self.passes += self.batch / problem.terms[0].rule.size
        return loss, flat_gradient(problem.parameters)

    def _direction(self, gradient: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """``H g``, or ``gamma g`` where it would not descend; before any pair, a gradient step
        of relative length 1e-3."""
        if not self.secant.s:
            return gradient * (1e-3 * float(theta.norm()) / max(float(gradient.norm()), 1e-300))
        direction = self.secant.apply(gradient)
        return direction if float(gradient @ direction) > 0 else self.secant.gamma * gradient

    def step(self) -> StepReport:
        drawn = self._draw()
        theta = self._flat()
        loss, gradient = self._loss_and_gradient(drawn)
        direction, length = self._direction(gradient, theta), self.lr
        for _ in range(11):
            self._set(theta - length * direction)
            new_loss, new_gradient = self._loss_and_gradient(drawn)
            if new_loss <= loss - 1e-4 * length * float(gradient @ direction):
                self.secant.add(-length * direction, new_gradient - gradient)
                break
            length /= 2
        else:  # no decrease along the direction: stay, and forget curvature that pointed there
            self._set(theta)
            self.secant = MultiSecant(self.secant.memory, self.secant.regularisation)
            length = 0.0
        points = self.problem.terms[0].rule.size if self.batch == 0 else self.batch
        return StepReport(loss, float(gradient.norm()), length, points, self.passes)

    def state_dict(self) -> dict:
        return {"secant": self.secant.state_dict(), "passes": self.passes}

    def load_state_dict(self, state: dict) -> None:
        self.secant.load_state_dict(state["secant"], self.problem.device)
        self.passes = float(state["passes"])

