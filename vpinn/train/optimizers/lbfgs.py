"""Full-batch L-BFGS with a strong-Wolfe line search on a fixed rule, exact gradients in chunks.

The loss of every term is summed over its whole rule (``full_loss_backward``: the gradient is
that of the full sum, at the memory of one chunk).  L-BFGS sees the loss divided by its
magnitude at the phase's first evaluation (see :class:`MemoizedObjective` for why).  The phase
ends early when the normalised loss changes by less than ``tolerance`` (relative) three
iterations in a row.
"""

from __future__ import annotations

import math

import torch

from vpinn.train.estimate import flat_gradient, full_loss_backward
from vpinn.train.optimizers import StepReport, TrainingProblem


class MemoizedObjective:
    """The full-batch closure for L-BFGS, remembering its last evaluation.

    torch's L-BFGS evaluates the closure at the start of every ``step``; the line search of the
    previous step has usually evaluated that very point already.  Returning the remembered loss
    and gradient then saves one full pass over the rule per iteration.

    Loss and gradient are multiplied by ``scale``: given, or on the first evaluation
    ``1/|loss|`` (1 if the loss is 0), so that L-BFGS works on a loss of order 1.  torch's L-BFGS
    keeps a curvature pair only if ``y.s > 1e-10``, an absolute threshold; a loss of size 5e-4
    (the Lamé sphere in physical units) makes most pairs fall below it and stalls the method
    (measured: relative L2 error stuck at 2.2e-3 instead of falling below 1e-3).
    """

    def __init__(self, parameters: list[torch.Tensor], evaluate, scale: float | None = None):
        self.parameters, self.evaluate, self.scale = parameters, evaluate, scale
        self.point: torch.Tensor | None = None
        self.loss: torch.Tensor | None = None
        self.gradient: torch.Tensor | None = None
        self.evaluations = 0

    def _flat(self, tensors) -> torch.Tensor:
        return torch.cat([t.reshape(-1) for t in tensors])

    def __call__(self) -> torch.Tensor:
        point = self._flat([p.detach() for p in self.parameters])
        if self.point is not None and torch.equal(point, self.point):
            offset = 0
            for p in self.parameters:
                p.grad = self.gradient[offset : offset + p.numel()].view_as(p).clone()
                offset += p.numel()
            return self.loss
        for p in self.parameters:
            p.grad = None
        loss = self.evaluate()
        self.evaluations += 1
        if self.scale is None:
            self.scale = 1 / abs(float(loss)) if float(loss) != 0 else 1.0
        for p in self.parameters:
            if p.grad is not None:
                p.grad.mul_(self.scale)
        self.loss = loss * self.scale
        self.point = point
        self.gradient = flat_gradient(self.parameters)
        return self.loss


class Lbfgs:
    """L-BFGS on the exact loss of ``problem.terms`` (their whole rules; see the module docstring).

    Parameters
    ----------
    problem:
        The parameters and the terms, each on the rule to minimise over (e.g. a finishing rule).
    dtype:
        The dtype of the rule points (the network's dtype in this phase, usually float64).
    steps:
        The phase's number of iterations.
    history:
        Number of curvature pairs kept.
    tolerance:
        Relative change of the normalised loss below which an iteration counts as quiet.
    """

    def __init__(self, problem: TrainingProblem, *, dtype: torch.dtype, steps: int, history: int = 50,
                 tolerance: float = 1e-12):
        self.problem, self.dtype, self.tolerance = problem, dtype, tolerance
        # One iteration per step() call (so the loop can log, checkpoint and stop between them);
        # max_eval bounds the line search's evaluations (torch's default for max_iter=1 is 1,
        # which would forbid any backtracking).
        self.lbfgs = torch.optim.LBFGS(problem.parameters, lr=1.0, max_iter=1, max_eval=25, history_size=history,
                                       tolerance_grad=0.0, tolerance_change=0.0, line_search_fn="strong_wolfe")
        self.objective = MemoizedObjective(problem.parameters, self._full_loss)
        self.previous: float | None = None
        self.quiet = 0

    def _full_loss(self) -> torch.Tensor:
        problem = self.problem
        return full_loss_backward(problem.terms, problem.trial, problem.chunk, problem.device, self.dtype, problem.group)

    def step(self) -> StepReport:
        objective = self.objective
        self.lbfgs.step(objective)
        normalised = float(objective())  # the new point: usually remembered from the line search
        change = abs(normalised - self.previous) if self.previous is not None else math.inf
        self.quiet = self.quiet + 1 if change <= self.tolerance * max(1.0, abs(normalised)) else 0
        self.previous = normalised
        return StepReport(normalised / objective.scale, float(objective.gradient.norm()) / objective.scale, float("nan"),
                          self.problem.terms[0].rule.size, float(objective.evaluations), converged=self.quiet >= 3)

    def state_dict(self) -> dict:
        return {"lbfgs": self.lbfgs.state_dict(), "scale": self.objective.scale, "previous": self.previous,
                "quiet": self.quiet, "evaluations": self.objective.evaluations}

    def load_state_dict(self, state: dict) -> None:
        self.lbfgs.load_state_dict(state["lbfgs"])
        self.objective.scale, self.previous, self.quiet = state["scale"], state["previous"], int(state["quiet"])
        self.objective.evaluations = int(state["evaluations"])
