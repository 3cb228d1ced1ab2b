"""Second-order steps: the energy natural gradient lands on the Galerkin solution for a model
linear in its parameters, its Gram matrix is the same in chunks and unbiased on minibatches,
Woodbury equals the dense solve; the multi-secant estimate satisfies H Y = S and solves a
quadratic in p + 1 steps; both train a small problem."""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import REPO, SMALL_POISSON, assembled, trainer_for
from vpinn.fields import Field
from vpinn.fields.ansatz import HardDirichletAnsatz
from vpinn.train import TrainingProblem
from vpinn.train.checkpoint import load_checkpoint
from vpinn.train.curvature import active_rows, curvature_chunks, jacobian_sums, solve_dense, solve_woodbury
from vpinn.train.optimizers.engd import Engd
from vpinn.train.optimizers.msqn import MultiSecant

F64 = torch.float64


@pytest.fixture
def phased_problem(tmp_path):
    """The small Poisson problem without the short-form schedule keys, for [[train.phase]] overrides."""
    path = tmp_path / "phased.toml"
    path.write_text(SMALL_POISSON.replace("steps = 20\n", "").replace("warmup = 5\n", ""))
    return path


def linear_model(small_problem):
    """The small Poisson problem with ``u = d (W [xi, sin, cos] + b)``: a network without hidden
    layers on fixed Fourier features, linear in its 12 parameters."""
    spec, assembly = assembled(small_problem, {"quadrature.cells": [4, 4, 4], "quadrature.order": 3})
    field = Field(1, width=1, depth=0, activation="tanh", lower=assembly.domain.lower, upper=assembly.domain.upper,
                  generator=torch.Generator().manual_seed(1), fourier_features=4, dtype=F64)
    trial = HardDirichletAnsatz(field, assembly.trial.distances, assembly.trial.lifts)
    problem = TrainingProblem(trial.parameters(), trial, assembly.terms, assembly.samplers, 10_000, torch.device("cpu"))
    return assembly, trial, problem


def flat_parameters(trial) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in trial.parameters()])


def set_parameters(trial, flat: torch.Tensor) -> None:
    offset = 0
    with torch.no_grad():
        for p in trial.parameters():
            p.copy_(flat[offset:offset + p.numel()].view_as(p))
            offset += p.numel()


def galerkin_solution(assembly, trial) -> torch.Tensor:
    """``A theta = b`` with ``A_ij = sum w grad phi_i . grad phi_j``, ``b_i = sum w f phi_i`` over
    the training rule, the basis ``phi_i = u(e_i) - u(0)`` evaluated directly (no Jacobian code)."""
    rule = assembly.terms[0].rule
    batch = rule.take(torch.arange(rule.size), F64)
    count = flat_parameters(trial).numel()
    set_parameters(trial, torch.zeros(count, dtype=F64))
    with torch.no_grad():
        u0, grad0 = trial(batch.points)
        columns = []
        for i in range(count):
            set_parameters(trial, torch.eye(count, dtype=F64)[i])
            u, grad = trial(batch.points)
            columns.append((u - u0, grad - grad0))
    phi = torch.stack([c[0][:, 0] for c in columns], 1)  # (n, P)
    grad_phi = torch.stack([c[1][:, 0] for c in columns], 2)  # (n, 3, P)
    source = assembly.physics.energy  # f enters the density as -f u: read it off at u = 1, grad u = 0
    f = -source.density(batch, torch.ones_like(u0), torch.zeros_like(grad0))
    matrix = torch.einsum("n,nip,niq->pq", batch.weights, grad_phi, grad_phi)
    return torch.linalg.solve(matrix, (batch.weights * f) @ phi)


def test_one_undamped_engd_step_lands_on_the_galerkin_solution(small_problem):
    assembly, trial, problem = linear_model(small_problem)
    expected = galerkin_solution(assembly, trial)
    set_parameters(trial, 0.1 * torch.ones_like(expected))
    engd = Engd(problem, dtype=F64, steps=1, damping=0.0, solver="dense", gram_rule=assembly.terms[0].rule)
    report = engd.step()
    assert report.lr == 1.0  # the line search takes the full Newton step
    torch.testing.assert_close(flat_parameters(trial), expected, rtol=1e-10, atol=1e-12)
    assert float(torch.linalg.vector_norm(engd._gradient()[2])) < 1e-10  # and the gradient there vanishes


def test_after_an_undone_step_the_line_search_keeps_to_full_steps_then_reaches_further(small_problem):
    """A step whose exact energy came out higher than its start's is undone; the next step may not
    be longer than eta = 1 (the long steps are where the Gram points misjudge the curvature),
    and each step taken doubles the reach again, up to 4.  Heavily damped, the direction is short
    enough that a line search free to reach far takes eta = 4."""
    assembly, trial, problem = linear_model(small_problem)
    start = 0.1 * torch.ones(flat_parameters(trial).numel(), dtype=F64)

    def engd_at_start() -> Engd:
        set_parameters(trial, start)
        return Engd(problem, dtype=F64, steps=3, damping=10.0, solver="dense", gram_rule=assembly.terms[0].rule)

    assert engd_at_start().step().lr == 4.0
    engd = engd_at_start()
    loss, volume_gradient, gradient = engd._gradient()
    engd.anchor = {"theta": [p.detach().clone() for p in engd.parameters], "loss": float(loss),
                   "volume_gradient": volume_gradient, "gradient": gradient}
    for sign in (1, -1):  # the energy is quadratic in the parameters: one of +-0.3 raises it
        set_parameters(trial, start + sign * 0.3)
        if float(engd._gradient()[0]) > float(loss):
            break
    assert engd.step().lr == 1.0 and engd.reach == 2.0
    assert engd.step().lr <= 2.0 and engd.reach == 4.0


def pieces_of(small_problem, index: torch.Tensor, factor: float, chunk: int):
    _, assembly = assembled(small_problem)
    term = assembly.terms[0]
    batch = term.rule.take(index, F64)
    return assembly, curvature_chunks(term.form, assembly.trial, batch, factor, chunk)


def test_gram_from_chunks_equals_one_shot(small_problem):
    index = torch.arange(4096)
    assembly, whole = pieces_of(small_problem, index, 1.0, 4096)
    _, chunked = pieces_of(small_problem, index, 1.0, 333)
    rows, trial = active_rows(whole), assembly.trial
    assert rows.tolist() == [1, 2, 3]  # Poisson: the Hessian acts on grad u only
    one_shot, in_chunks = jacobian_sums(whole, trial), jacobian_sums(chunked, trial)
    torch.testing.assert_close(in_chunks.matrix, one_shot.matrix, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(in_chunks.slope_gradient, one_shot.slope_gradient, rtol=1e-12, atol=1e-14)


def test_the_sample_gradient_of_one_jacobian_pass_is_the_energy_gradient(small_problem):
    """``sum_i c w_i J_i^T de/dz_i`` from the Jacobian pass equals autograd's gradient of the
    sample's energy ``c sum_i w_i e_i``: the line search's linear part rests on it."""
    index, factor = torch.arange(500), 3.5
    assembly, pieces = pieces_of(small_problem, index, factor, 128)
    term, trial = assembly.terms[0], assembly.trial
    for p in trial.parameters():
        p.grad = None
    batch = term.rule.take(index, F64)
    (factor * (batch.weights * term.form.density(batch, *trial(batch.points))).sum()).backward()
    autograd = torch.cat([p.grad.reshape(-1) for p in trial.parameters()])
    sums = jacobian_sums(pieces, trial)
    torch.testing.assert_close(sums.slope_gradient, autograd, rtol=1e-11, atol=1e-13)


def test_minibatch_gram_and_gradient_are_unbiased(small_problem):
    """v^T G v and v.g of 400 minibatches of 64 points: mean within 4 standard errors of the full sums."""
    assembly, full = pieces_of(small_problem, torch.arange(4096), 1.0, 4096)
    term, trial = assembly.terms[0], assembly.trial
    gram = jacobian_sums(full, trial).matrix
    v = torch.randn(gram.shape[0], dtype=F64, generator=torch.Generator().manual_seed(3))
    exact_gram = float(v @ gram @ v)
    parameters = trial.parameters()

    def gradient_along_v(index, factor) -> float:
        for p in parameters:
            p.grad = None
        batch = term.rule.take(index, F64)
        (factor * (batch.weights * term.form.density(batch, *trial(batch.points))).sum()).backward()
        return float(torch.cat([p.grad.reshape(-1) for p in parameters]) @ v)

    exact_gradient = gradient_along_v(torch.arange(4096), 1.0)
    grams, gradients = [], []
    for _ in range(400):
        index, factor = assembly.samplers[0].sample(64)
        pieces = curvature_chunks(term.form, trial, term.rule.take(index, F64), factor, 64)
        grams.append(float(v @ jacobian_sums(pieces, trial).matrix @ v))
        gradients.append(gradient_along_v(index, factor))
    for samples, exact in ((torch.tensor(grams), exact_gram), (torch.tensor(gradients), exact_gradient)):
        error = float(samples.std()) / math.sqrt(len(samples))
        assert abs(float(samples.mean()) - exact) < 4 * error and error < 0.1 * abs(exact)


def test_elastic_gram_from_six_rows_per_point_equals_the_full_product():
    """Linear elasticity curves only the strain: ``H`` (12 x 12 in ``(u, grad u)``) has rank 6,
    so ``A`` has 6 rows per point, and ``A^T A`` equals ``sum_i w_i J_i^T H_i J_i`` formed from
    the whole 12-row Jacobians."""
    _, assembly = assembled(REPO / "problems" / "elasticity_cube.toml",
                            {"quadrature.cells": [2, 2, 2], "train.batch": 64, "model.width": 8, "model.depth": 1})
    term, trial = assembly.terms[0], assembly.trial
    pieces = curvature_chunks(term.form, trial, term.rule.take(torch.arange(100), F64), 2.0, 40)
    direct = sum(torch.einsum("b,bqp,bqr,brs->ps", p.weights, trial.parameter_jacobian(p.batch.points), p.hessian,
                              trial.parameter_jacobian(p.batch.points)) for p in pieces)
    torch.testing.assert_close(jacobian_sums(pieces, trial).matrix, direct, rtol=1e-10, atol=1e-12 * float(direct.abs().max()))
    assert jacobian_sums(pieces, trial, factored=True).matrix.shape[0] == 6 * 100


def test_woodbury_equals_the_dense_damped_solve(small_problem):
    assembly, pieces = pieces_of(small_problem, torch.arange(100), 40.96, 100)  # 300 rows < 337 parameters
    gram, square_root = jacobian_sums(pieces, assembly.trial).matrix, jacobian_sums(pieces, assembly.trial, factored=True).matrix
    assert square_root.shape == (300, gram.shape[0])  # 3 rows per point: Poisson curves grad u only
    torch.testing.assert_close(square_root.T @ square_root, gram, rtol=1e-10, atol=1e-12)
    g = torch.randn(gram.shape[0], dtype=F64, generator=torch.Generator().manual_seed(4))
    damping = 1e-3 * float(gram.diagonal().mean())
    woodbury, dense = solve_woodbury(square_root, g, damping), solve_dense(gram, g, damping)
    for x in (woodbury, dense):  # both solve (G + damping I) x = g
        residual = gram @ x + damping * x - g
        assert float(residual.norm()) < 1e-9 * float(g.norm())
    assert float((woodbury - dense).norm()) < 1e-6 * float(dense.norm())


def quadratic(p: int, seed: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """A symmetric positive definite A (condition about 100) and b: minimise x^T A x / 2 - b.x."""
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(p, p, dtype=F64, generator=generator))
    return q @ torch.diag(torch.logspace(0, 2, p, dtype=F64)) @ q.T, torch.randn(p, dtype=F64, generator=generator)


def test_multisecant_fit_satisfies_the_secant_equations():
    a, _ = quadratic(8)
    secant = MultiSecant(memory=5, regularisation=1e-14)
    s = torch.randn(8, 5, dtype=F64, generator=torch.Generator().manual_seed(6))
    for k in range(5):
        assert secant.add(s[:, k], a @ s[:, k])
    hy = torch.stack([secant.apply(y) for y in (a @ s).T], 1)
    torch.testing.assert_close(hy, s, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("p, memory", [(6, 6), (6, 10)])
def test_multisecant_iteration_solves_a_quadratic_in_p_plus_one_steps(p, memory):
    a, b = quadratic(p)
    solution = torch.linalg.solve(a, b)
    secant, x = MultiSecant(memory, regularisation=1e-14), torch.zeros(p, dtype=F64)
    for step in range(p + 1):
        g = a @ x - b
        direction = secant.apply(g) if secant.s else 1e-2 * g
        x_next = x - direction
        secant.add(x_next - x, (a @ x_next - b) - g)
        x = x_next
    torch.testing.assert_close(x, solution, rtol=1e-7, atol=1e-9)


ADAM = {"optimizer": "adam", "steps": 150, "lr": 1e-2, "warmup": 20}


@pytest.mark.parametrize("phases, bound", [
    ([ADAM, {"optimizer": "engd", "steps": 12, "gram_rule": "finish"}], 2e-3),
    ([ADAM, {"optimizer": "engd", "steps": 12, "gram_rule": "training", "gram_points": 1024}], 5e-3),
    ([{"optimizer": "msqn", "steps": 40, "memory": 10}], 1.5e-2),
    ([{"optimizer": "msqn", "steps": 40, "memory": 10, "batch": 1024, "lr": 0.5}], 0.25),
])
def test_second_order_phases_train(phased_problem, phases, bound):
    """ENGD after 150 Adam steps (relative L2 0.05) reaches 2e-3 in 12 steps; exact multi-secant
    steps from the initial network (relative L2 about 1) reach 1.5e-2 in 40, minibatch ones train
    too but stay noisy (about 0.08)."""
    trainer = trainer_for(phased_problem, {"train.phase": phases, "model.width": 16, "model.depth": 2})
    trainer.run()
    assert trainer.history[-1]["rel_l2"] <= bound


def test_engd_resumes_exactly(phased_problem, tmp_path):
    overrides = {"train.phase": [{"optimizer": "adam", "steps": 20}, {"optimizer": "engd", "steps": 6}]}
    whole = trainer_for(phased_problem, overrides)
    whole.run()
    first = trainer_for(phased_problem, {**overrides, "train.phase[1].steps": 3}, checkpoint=tmp_path / "c.pt")
    first.run()
    second = trainer_for(phased_problem, overrides)
    second.load_state_dict(load_checkpoint(tmp_path / "c.pt"))
    second.run()
    assert all(torch.equal(a, b) for a, b in zip(whole.network.parameters(), second.network.parameters()))


def test_short_form_keys_beside_phases_are_refused(small_problem):
    from vpinn.errors import ProblemFileError
    from vpinn.problem import load_problem

    both = small_problem.with_name("both.toml")
    both.write_text(small_problem.read_text() + '\n[[train.phase]]\noptimizer = "engd"\n')
    with pytest.raises(ProblemFileError, match=r"train.steps: is not used when \[\[train.phase\]\] gives the schedule; "
                                               r"set it on a phase instead, e.g. train.phase\[0\].steps"):
        load_problem(both)


def test_a_schedule_override_replaces_a_short_form_schedule(small_problem):
    """``run.py compare`` passes whole schedules: on a short-form file (``train.steps``, ...) the
    override replaces that schedule instead of being refused beside it."""
    from vpinn.problem import load_problem

    assert [p.optimizer for p in load_problem(small_problem).train.phases] == ["adam"]
    spec = load_problem(small_problem, {"train.phase": [{"optimizer": "adam", "steps": 7}, {"optimizer": "engd", "steps": 3}]})
    assert [(p.optimizer, p.steps) for p in spec.train.phases] == [("adam", 7), ("engd", 3)]
