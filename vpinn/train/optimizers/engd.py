"""Energy natural gradient descent (ENGD; Müller & Zeinhofer, ICML 2023) on samples of a large rule.

One step, with ``theta`` the network's parameters:

1. **Gradient** ``g = dE/dtheta``: exact, summed over the whole training rule in chunks
   (``gradient_points = 0``), or an unbiased minibatch estimate of ``gradient_points`` points.
2. **Gram matrix** ``G = sum_i w_i J_i^T H_i J_i`` (:mod:`vpinn.train.curvature`) estimated on a
   fresh sample of ``gram_points`` points of the training rule (epochs without replacement,
   weights N/n: unbiased), or summed over a small auxiliary Gauss rule (``gram_rule``).
   ``G`` only preconditions: the fixed point of the iteration is set by ``g`` alone, so with the
   exact gradient the method converges to the minimiser of the big rule whatever points ``G``
   came from.  Their quality sets the speed: ``G``'s smallest eigenvalues (condition numbers
   reach 1e20) are those of the least-resolved directions, which a random sample misjudges and
   a Gauss rule integrates accurately (measured on the Poisson cube, 32x32 network, 120 steps:
   4,096 random points of the training rule stall near 1.3e-5 relative L2, a 5,832-point
   auxiliary Gauss rule reaches 4.6e-6).  A boundary term that reads ``grad u`` (Nitsche's)
   adds the Gram matrix of its curvature stand-in (:mod:`vpinn.train.curvature`) on a fresh
   sample of its own rule, of its ``boundary_batch`` points.
3. **Direction** ``d = (G + lam I)^-1 g``, ``lam = damping * boost * tr(G)/P``: a dense Cholesky
   solve, or the Woodbury form when the sample has fewer rows than there are parameters.
4. **Line search** over ``eta in {4, 2, 1, 1/2, ..., 2^-10}`` on the change of the energy, estimated on
   the Gram sample with a control variate: for an energy quadratic in ``z = (u, grad u)``,
   ``E(theta - eta d) - E(theta) = sum_i w_i [e'_i . dz_i + dz_i^T H_i dz_i / 2]``, and the
   linear part of ``dz_i``, ``-eta J_i d``, sums over the whole rule to ``-eta g.d`` exactly; only
   the small remainder is sampled, so the estimate stays accurate when the change is tiny
   (near the minimum, where a plain sampled difference would be pure noise).  Boundary terms
   (loads, linear in u; Nitsche's terms, quadratic in ``(u, grad u)``) are summed over their
   whole rules.
5. If no ``eta`` lowers the estimate the step is rejected; the damping adapts as in
   Levenberg-Marquardt: its factor ``boost`` is divided by the ``eta`` taken (the step length
   the line search chose says how far the damped step fell short of, or overshot, the best one:
   ``eta = 2`` halves the damping, ``eta = 1/4`` quadruples it), raised at most 16-fold per step
   and 16-fold after a rejected step.  Measured on the Poisson cube (110,592-point rule, 90 steps after 500 Adam
   steps): 5.9e-6 relative L2, against 9.8e-6 with ``eta <= 1`` and a 4-fold up-or-down
   damping rule, which alternated between too long and too short steps.
   With exact gradients the next step's exact energy checks the last one: a step that raised it
   after all is undone (the estimate sees the curvature only on the Gram points, so it can miss
   some along d, most of all on the long steps ``eta = 2, 4``), and the line search then keeps to
   ``eta <= 1`` and may reach twice as far again after each step it takes (a trust region on the
   step length: without it, a coarse Gram rule that misjudged the long steps chose them again
   after every undo, measured on the hollow sphere).

Memory: one chunk of the gradient sum, or one chunk of the Gram sample's Jacobians, ``chunk x q
x P`` numbers (q = 4m; e.g. 2,048 points x 4 x 1,217 parameters x 8 bytes = 80 MB), plus ``G``
(P x P) and ``q + q^2`` numbers per Gram point.
"""

from __future__ import annotations

import dataclasses

import torch

from vpinn.distributed import shared_chunks
from vpinn.physics.base import integrand
from vpinn.quadrature.base import PointBatch, QuadratureRule
from vpinn.train.batching import fit
from vpinn.train.curvature import CurvatureChunk, active_rows, curvature_chunks, jacobian_sums, solve_dense, solve_woodbury
from vpinn.train.estimate import flat_gradient, full_loss_backward, minibatch_loss, sum_gradients
from vpinn.train.optimizers import StepReport, TrainingProblem

#: step lengths tried by the line search
STEPS = tuple(0.5**k for k in range(-2, 11))


class Engd:
    """ENGD; see the module docstring.

    Parameters
    ----------
    problem:
        The trial function (it must provide ``parameters()`` and ``parameter_jacobian(x)``, as
        :class:`~vpinn.fields.ansatz.HardDirichletAnsatz` does), the terms and samplers.
    dtype:
        The dtype of the phase (float64: the Gram matrix's condition number reaches 1e20).
    steps:
        The phase's number of steps.
    gram_points:
        Sample size of the Gram matrix and the line search (when ``gram_rule`` is None).
    gram_rule:
        A fixed auxiliary rule whose every point enters the Gram matrix, instead of a sample.
    gradient_points:
        0: exact gradient over the whole rule; else the minibatch size of its estimate.
    damping:
        ``lam / (tr G / P)``, the relative Tikhonov damping.
    solver:
        "dense", "woodbury" or "auto" (Woodbury when the sample has fewer rows than parameters).
    chunk:
        Points per chunk of the Gram sample (bounds the memory of the Jacobians in flight).
    """

    def __init__(self, problem: TrainingProblem, *, dtype: torch.dtype, steps: int, gram_points: int = 4096,
                 gradient_points: int = 0, damping: float = 1e-6, solver: str = "auto", chunk: int = 2048,
                 gram_rule: QuadratureRule | None = None):
        self.problem, self.dtype = problem, dtype
        self.gram_points, self.gradient_points = gram_points, gradient_points
        self.damping, self.solver, self.chunk = damping, solver, chunk
        self.volume, self.boundary = problem.terms[0], problem.terms[1:]
        self.gram_rule, self.boost, self.passes = gram_rule, 1.0, 0.0
        self.reach = STEPS[0]  # the longest step length the line search may take (1 after an undone step)
        self.anchor: dict | None = None  # the last accepted point, its exact loss and gradients

    @property
    def parameters(self) -> list[torch.Tensor]:
        return self.problem.trial.parameters()

    def _gradient(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, gradient of the volume term, gradient of the whole loss), flat in ``parameters``
        order, each summed over the ranks (the volume and the boundary terms in turn, from cleared
        gradients)."""
        problem, group = self.problem, self.problem.group
        terms = [self.volume, *self.boundary] if self.gradient_points == 0 else \
            [dataclasses.replace(self.volume, batch=self.gradient_points), *self.boundary]
        loss, gradients = torch.zeros((), dtype=torch.float64, device=problem.device), []
        for part, samplers in ((terms[:1], problem.samplers[:1]), (terms[1:], problem.samplers[1:])):
            for p in self.parameters:
                p.grad = None
            if self.gradient_points == 0:
                loss = loss + full_loss_backward(part, problem.trial, problem.chunk, problem.device, self.dtype, group)
            elif part:
                estimate, _ = minibatch_loss(part, samplers, problem.trial, self.dtype)
                estimate.backward()
                loss = loss + sum_gradients(self.parameters, group, [estimate.detach()])[0]
            gradients.append(flat_gradient(self.parameters))
        self.passes += 1 if self.gradient_points == 0 else self.gradient_points * group.size / self.volume.rule.size
        return loss, gradients[0], gradients[0] + gradients[1]

    def _direction(self, pieces: list[CurvatureChunk], boundary: list[tuple[list[CurvatureChunk], int]],
                   gradient: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The damped direction ``(G + lam I)^-1 g`` and the Gram sample's own energy gradient
        (for the line search), from one pass over the samples' Jacobians (the volume's, and the
        ``(pieces, points)`` of each curved boundary term)."""
        group = self.problem.group
        points = self.gram_rule.size if self.gram_rule is not None else fit(self.gram_points, self.problem.samplers[0]) * group.size
        # the rows over all ranks, so that every rank picks the same solver
        count = sum(n * len(active_rows(p, group)) for p, n in [(pieces, points), *boundary])
        woodbury = self.solver == "woodbury" or (self.solver == "auto" and self.damping > 0 and count < len(gradient))
        sums = jacobian_sums(pieces, self.problem.trial, factored=woodbury, group=group,
                             gram_only=[chunk for p, _ in boundary for chunk in p])
        if woodbury:
            scale = float((sums.matrix * sums.matrix).sum()) / len(gradient)
            return solve_woodbury(sums.matrix, gradient, self.damping * self.boost * scale), sums.slope_gradient
        damping = self.damping * self.boost * float(sums.matrix.diagonal().mean())
        return solve_dense(sums.matrix, gradient, damping), sums.slope_gradient

    def _move(self, start: list[torch.Tensor], direction: torch.Tensor, eta: float) -> None:
        """``theta = start - eta * direction``, in place (``start`` itself for ``eta = 0``)."""
        offset = 0
        with torch.no_grad():
            for p, p0 in zip(self.parameters, start):
                if eta == 0:
                    p.copy_(p0)
                else:
                    torch.sub(p0, direction[offset:offset + p.numel()].view_as(p), alpha=eta, out=p)
                offset += p.numel()

    def _boundary_values(self) -> list[tuple]:
        """Each boundary term's batches (this rank's share of its rule) with its density there
        (for exact differences)."""
        problem, cached = self.problem, []
        for term in self.boundary:
            for index in shared_chunks(term.rule, problem.chunk, problem.device, problem.group):
                batch = term.rule.take(index, self.dtype)
                with torch.no_grad():
                    cached.append((term.form, batch, integrand(term.form, problem.trial, batch)))
        return cached

    def _energy_changes(self, pieces: list[CurvatureChunk], direction: torch.Tensor, volume_gradient: torch.Tensor,
                        sample_gradient: torch.Tensor, boundary: list[tuple], steps: list[float]) -> list[float]:
        """The estimated ``E(theta - eta d) - E(theta)`` for every ``eta`` of ``steps``: each
        rank sums its Gram points and its share of the boundary rules, the sums are summed over the
        ranks, and the exact linear part ``-eta g.d`` is added once.  The sample's own linear
        part, ``sum_i w_i e'_i . (-eta J_i d) = -eta g_sample.d``, is taken out of the sampled sum
        with ``sample_gradient`` (already summed over the ranks, so added on rank 0 only)."""
        group = self.problem.group
        linear = float(volume_gradient @ direction)
        sample_linear = float(sample_gradient @ direction) if group.rank == 0 else 0.0
        start = [p.detach().clone() for p in self.parameters]
        changes = []
        for eta in steps:
            self._move(start, direction, eta)
            total = torch.zeros((), dtype=torch.float64, device=direction.device)
            with torch.no_grad():
                for piece in pieces:
                    u, grad_u = self.problem.trial(piece.batch.points)
                    dz = torch.cat([u, grad_u.reshape(u.shape[0], -1)], dim=1) - piece.z
                    first = (piece.slope * dz).sum(1)
                    quadratic = 0.5 * (dz[:, None, :] @ piece.hessian @ dz[:, :, None])[:, 0, 0]
                    total += (piece.weights * (first + quadratic)).sum(dtype=torch.float64)
                for form, batch, before in boundary:
                    change = integrand(form, self.problem.trial, batch) - before
                    total += (batch.weights * change).sum(dtype=torch.float64)
            changes.append(total + eta * sample_linear)
        self._move(start, direction, 0.0)
        sampled = group.sum_(torch.stack(changes)).tolist()
        return [part - eta * linear for part, eta in zip(sampled, steps)]

    def _gram_sample(self) -> tuple[PointBatch, float]:
        """This rank's points of this step's Gram matrix and their estimator factor: its part of a
        fresh sample of the training rule, or its share of the whole auxiliary rule."""
        if self.gram_rule is None:
            sampler = self.problem.samplers[0]
            index, factor = sampler.sample(fit(self.gram_points, sampler))
            batch = self.volume.rule.take(index, self.dtype)
            return dataclasses.replace(batch, weights=factor * batch.weights), 1.0
        start, stop = self.problem.group.share(self.gram_rule.size)
        return self.gram_rule.take(torch.arange(start, stop, device=self.problem.device), self.dtype), 1.0

    def _boundary_curvature(self) -> list[tuple[list[CurvatureChunk], int]]:
        """The curvature pieces of a fresh sample of each boundary term that reads ``grad u``
        (the loads are linear in u: no curvature), drawn by its own sampler (its batch,
        unbiased), and the sample's size over all ranks."""
        problem, curved = self.problem, []
        for term, sampler in zip(self.boundary, problem.samplers[1:]):
            if term.form.needs_gradient:
                points = fit(term.batch, sampler)
                index, factor = sampler.sample(points)
                batch = term.rule.take(index, self.dtype)
                curved.append((curvature_chunks(term.form, problem.trial, batch, factor, self.chunk),
                               points * problem.group.size))
        return curved

    def _checked_gradient(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`_gradient` at the current point; with exact gradients, if the last step raised
        the exact energy after all (the line search estimates it on the Gram points only), the
        step is undone, the damping raised 16-fold and the line search's reach cut to ``eta = 1``,
        and the point before it is used again."""
        loss, volume_gradient, gradient = self._gradient()
        if self.gradient_points:
            return loss, volume_gradient, gradient
        anchor = self.anchor
        if anchor is not None and float(loss) > anchor["loss"] + 1e-14 * abs(anchor["loss"]):
            self._move(anchor["theta"], gradient, 0.0)
            self.boost, self.reach = min(self.boost * 16, 1e8), 1.0
            loss, volume_gradient, gradient = (torch.tensor(anchor["loss"], dtype=torch.float64), anchor["volume_gradient"],
                                               anchor["gradient"])
        self.anchor = {"theta": [p.detach().clone() for p in self.parameters], "loss": float(loss),
                       "volume_gradient": volume_gradient, "gradient": gradient}
        return loss, volume_gradient, gradient

    def step(self) -> StepReport:
        loss, volume_gradient, gradient = self._checked_gradient()
        sample, factor = self._gram_sample()
        pieces = curvature_chunks(self.volume.form, self.problem.trial, sample, factor, self.chunk)
        direction, sample_gradient = self._direction(pieces, self._boundary_curvature(), gradient)
        steps = [eta for eta in STEPS if eta <= self.reach]
        changes = self._energy_changes(pieces, direction, volume_gradient, sample_gradient, self._boundary_values(), steps)
        best = min(range(len(steps)), key=changes.__getitem__)
        eta = steps[best] if changes[best] < 0 else 0.0
        self.reach = min(2 * self.reach, STEPS[0]) if eta > 0 else self.reach
        if eta > 0:
            self._move(self.anchor["theta"] if self.anchor else [p.detach().clone() for p in self.parameters],
                       direction, eta)
        self._adapt_damping(eta)
        return StepReport(float(loss), float(gradient.norm()), eta,
                          self.volume.rule.size if self.gradient_points == 0 else self.gradient_points * self.problem.group.size,
                          self.passes)

    def _adapt_damping(self, eta: float) -> None:
        """Levenberg-Marquardt on the damping's factor ``boost``: divided by the step length
        taken (a longer step than 1 says the damping held the step back, a shorter one that it let
        it overshoot), raised at most 16-fold in one step (as after a rejected step: a few very
        short steps must not leave it damped for many); never below the given damping."""
        factor = min(1.0 / eta, 16.0) if eta > 0 else 16.0
        self.boost = max(1.0, min(self.boost * factor, 1e8))

    def state_dict(self) -> dict:
        return {"boost": self.boost, "passes": self.passes, "anchor": self.anchor, "reach": self.reach}

    def load_state_dict(self, state: dict) -> None:
        self.boost, self.passes, self.reach = float(state["boost"]), float(state["passes"]), float(state["reach"])
        anchor, device = state["anchor"], self.problem.device
        self.anchor = None if anchor is None else {
            "theta": [t.to(device) for t in anchor["theta"]], "loss": float(anchor["loss"]),
            "volume_gradient": anchor["volume_gradient"].to(device), "gradient": anchor["gradient"].to(device)}
