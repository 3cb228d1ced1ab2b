"""Training loop: schedules, optimisers behind one protocol, exact resumption, divergence
handling, time budget, Ctrl-C, portable checkpoints."""

from __future__ import annotations

import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, SMALL_POISSON, run_cli, trainer_for
from vpinn.assemble import assemble
from vpinn.errors import TrainingDiverged
from vpinn.problem import load_problem
from vpinn.train import OPTIMIZERS, Phase, Schedule, StepReport, Trainer, TrainingProblem
from vpinn.train.checkpoint import load_checkpoint, save_checkpoint
from vpinn.train.optimizers.adam import clip_by_global_norm


def test_warmup_then_cosine_decay():
    schedule = Schedule(lr=1e-2, steps=101, warmup=10, decay="cosine", lr_final=1e-4)
    assert schedule(0) == pytest.approx(1e-3)
    assert schedule(9) == pytest.approx(1e-2)
    assert schedule(10) == pytest.approx(1e-2)
    assert schedule(55) == pytest.approx((1e-2 + 1e-4) / 2)
    assert schedule(100) == pytest.approx(1e-4)
    values = [schedule(s) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_exponential_and_constant_decay():
    schedule = Schedule(lr=1e-2, steps=11, decay="exponential", lr_final=1e-4)
    assert schedule(5) == pytest.approx(1e-3)
    assert schedule(10) == pytest.approx(1e-4)
    assert Schedule(lr=3e-3, steps=11, decay="constant")(7) == 3e-3


def test_clipping_bounds_the_global_norm_and_reports_the_norm_before():
    parameters = [torch.zeros(3, requires_grad=True), torch.zeros(2, 2, requires_grad=True)]
    parameters[0].grad = torch.tensor([3.0, 0.0, 0.0])
    parameters[1].grad = torch.tensor([[0.0, 4.0], [0.0, 0.0]])
    assert float(clip_by_global_norm(parameters, 0.0)) == pytest.approx(5.0)  # 0: off
    assert torch.equal(parameters[0].grad, torch.tensor([3.0, 0.0, 0.0]))
    assert float(clip_by_global_norm(parameters, 1.0)) == pytest.approx(5.0)
    torch.testing.assert_close(parameters[0].grad, torch.tensor([0.6, 0.0, 0.0]))
    torch.testing.assert_close(parameters[1].grad, torch.tensor([[0.0, 0.8], [0.0, 0.0]]))
    assert float(clip_by_global_norm(parameters, 10.0)) == pytest.approx(1.0)  # below the bound: untouched


def test_train_clip_acts_in_a_run(small_problem):
    """With a tiny bound every logged gradient norm (before clipping) exceeds it, and the run's
    weights differ from an unclipped run's."""
    clipped = trainer_for(small_problem, {"train.clip": 1e-3})
    plain = trainer_for(small_problem)
    clipped.run(), plain.run()
    assert all(row["grad_norm"] > 1e-3 for row in clipped.history if row["phase"] == "adam")
    assert not torch.equal(clipped.network.weights[0], plain.network.weights[0])


class HalfStep:
    """A dummy optimiser for the protocol test: ``theta <- theta / 2`` each step."""

    def __init__(self, problem: TrainingProblem, *, dtype: torch.dtype, steps: int):
        self.parameters, self.count = problem.parameters, 0

    def step(self) -> StepReport:
        with torch.no_grad():
            for p in self.parameters:
                p.mul_(0.5)
        self.count += 1
        return StepReport(float(self.count), 0.0, float("nan"), 0)

    def state_dict(self) -> dict:
        return {"count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.count = state["count"]


def test_a_new_optimiser_is_one_class_and_one_registry_entry(small_problem, monkeypatch):
    monkeypatch.setitem(OPTIMIZERS, "half", HalfStep)
    spec = load_problem(small_problem, {"train.dtype": "float64"})
    assembly = assemble(spec, torch.device("cpu"))
    parameters = list(assembly.field.parameters())
    start = [p.detach().clone() for p in parameters]
    problem = TrainingProblem(parameters, assembly.trial, assembly.terms, assembly.samplers, 1000, torch.device("cpu"))
    optimizer = OPTIMIZERS["half"](problem, dtype=torch.float64, steps=3)
    trainer = Trainer([Phase("half", optimizer, 3, torch.float64, log_every=1, eval_every=3)], assembly.field, {},
                      assembly.evaluate)
    result = trainer.run()
    assert result.steps == {"half": 3} and [row["loss"] for row in trainer.history] == [1.0, 2.0, 3.0]
    assert all(torch.equal(p, s / 8) for p, s in zip(parameters, start))
    assert math.isfinite(trainer.history[-1]["rel_l2"])


def stop_at(trainer: Trainer, step: int, action) -> None:
    """Run ``action(trainer)`` right after Adam step ``step``."""
    optimizer = trainer.phases[0].optimizer
    original = optimizer.step

    def step_then_act():
        out = original()
        if optimizer.count == step:
            action(trainer)
        return out

    optimizer.step = step_then_act


class Interrupt:
    """An observer-like stop request, switched on by a test."""

    def __init__(self, trainer: Trainer):
        self.trainer, self.on = trainer, False
        trainer.observer.stop_requested = lambda: "interrupted" if self.on else None


def test_resumed_run_equals_uninterrupted_run(small_problem, tmp_path):
    """Interrupt after 13 Adam steps, resume: same weights as one run (Adam + L-BFGS phases)."""
    overrides = {"train.lbfgs.iterations": 4}
    whole = trainer_for(small_problem, overrides)
    whole.run()

    first = trainer_for(small_problem, overrides, checkpoint=tmp_path / "c.pt")
    interrupt = Interrupt(first)
    stop_at(first, 13, lambda t: setattr(interrupt, "on", True))
    assert first.run().status == "interrupted"
    assert load_checkpoint(tmp_path / "c.pt")["done"] == [13, 0]

    second = trainer_for(small_problem, overrides, checkpoint=tmp_path / "c.pt")
    second.load_state_dict(load_checkpoint(tmp_path / "c.pt"))
    result = second.run()
    assert result.status == "completed" and result.steps == {"adam": 20, "lbfgs": 4}
    for a, b in zip(whole.network.parameters(), second.network.parameters()):
        assert a.dtype == b.dtype == torch.float64 and torch.equal(a, b)
    # The resumed history is the uninterrupted one plus the row written at the interruption.
    assert [r["step"] for r in second.history] == sorted([r["step"] for r in whole.history] + [13])


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(small_problem, tmp_path):
    trainer = trainer_for(small_problem, checkpoint=tmp_path / "c.pt")

    def poison(t):
        with torch.no_grad():
            t.network.weights[0].fill_(float("nan"))

    stop_at(trainer, 12, poison)  # checkpoints at step 10; NaN appears at step 13, logged at 15
    with pytest.raises(TrainingDiverged, match="loss became nan at adam step 15; the last good checkpoint of this run"):
        trainer.run()
    state = load_checkpoint(tmp_path / "c.pt")
    assert state["done"] == [10]
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_time_budget_ends_training(small_problem):
    trainer = trainer_for(small_problem, {"train.steps": 10**6, "train.lbfgs.iterations": 10**6}, max_time=2.0)
    started = time.perf_counter()
    result = trainer.run()
    assert result.status == "time limit" and 0 < result.steps["adam"] < 10**6 and result.steps["lbfgs"] > 0
    assert time.perf_counter() - started < 2.0 + 2.0  # one step and one evaluation of slack
    assert math.isfinite(trainer.history[-1]["rel_l2"])


def test_ctrl_c_saves_a_checkpoint_and_resume_continues(small_problem, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, str(REPO / "run.py"), "solve", str(small_problem), "--out", str(out), "--quiet",
               "--set", "train.steps=1000000", "--set", "train.checkpoint_every=1000000"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    process.stdout.readline()  # the first line appears when training starts
    time.sleep(1.5)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted by SIGINT at step" in stdout and "Traceback" not in stderr
    stopped_at = sum(load_checkpoint(out / "checkpoint.pt")["done"])
    assert stopped_at > 0
    resumed = subprocess.run(command + ["--resume", "--max-time", "1"], capture_output=True, text=True, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming small at adam step {stopped_at}" in resumed.stdout
    assert sum(load_checkpoint(out / "checkpoint.pt")["done"]) > stopped_at
    assert (out / "summary.json").exists()


def test_same_seed_same_weights_other_seed_other_weights(small_problem):
    runs = [trainer_for(small_problem, {"train.seed": seed}) for seed in (3, 3, 4)]
    for trainer in runs:
        for _ in range(5):
            trainer.phases[0].optimizer.step()
    first, again, other = ([p.detach() for p in t.network.parameters()] for t in runs)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_resume_without_a_checkpoint_is_a_one_line_error(small_problem, tmp_path):
    done = run_cli("solve", str(small_problem), "--resume", "--out", str(tmp_path / "none"), cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip() == f"error: --resume: no checkpoint at {tmp_path / 'none' / 'checkpoint.pt'}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_asking_for_cuda_without_it_is_a_one_line_error(small_problem, tmp_path):
    done = run_cli("solve", str(small_problem), "--device", "cuda", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip() == "error: --device cuda: CUDA is not available on this machine"


def test_history_rows_carry_epoch_and_batch(small_problem):
    trainer = trainer_for(small_problem)
    trainer.run()
    rows = trainer.history
    assert all(row["batch"] == 256 for row in rows)
    # The rule has 8^3 * 2^3 = 4096 points: 20 steps of 256 are 1.25 epochs.
    assert rows[-1]["epoch"] == pytest.approx(20 * 256 / 4096, abs=0.1)
    assert all(a["epoch"] < b["epoch"] for a, b in zip(rows, rows[1:]))


def test_checkpoint_resumes_whatever_device_wrote_it(small_problem, tmp_path):
    """The sampler state is plain integers (no device generator blob): a checkpoint whose tensors
    all moved to another device type (here: simulated by a layout that a CUDA run would give,
    every tensor re-created) resumes and continues exactly like the uninterrupted run."""
    whole = trainer_for(small_problem)
    whole.run()
    first = trainer_for(small_problem, checkpoint=tmp_path / "c.pt")
    interrupt = Interrupt(first)
    stop_at(first, 7, lambda t: setattr(interrupt, "on", True))
    first.run()
    state = load_checkpoint(tmp_path / "c.pt")
    assert all(isinstance(v, (int, str)) for sampler in state["samplers"] for v in sampler.values())
    moved = torch.utils._pytree.tree_map(lambda v: v.clone() if torch.is_tensor(v) else v, state)
    save_checkpoint(tmp_path / "moved.pt", moved)
    second = trainer_for(small_problem)
    second.load_state_dict(load_checkpoint(tmp_path / "moved.pt"))
    second.run()
    assert all(torch.equal(a, b) for a, b in zip(whole.network.parameters(), second.network.parameters()))


@pytest.fixture(scope="module")
def four_step_run(tmp_path_factory) -> tuple[Path, Path]:
    """One 4-step solve of the small problem (its file and results directory), shared by the
    resume cases, each of which edits a copy of the directory."""
    root = tmp_path_factory.mktemp("four_steps")
    problem, out = root / "small.toml", root / "out"
    problem.write_text(SMALL_POISSON)
    first = run_cli("solve", str(problem), "--out", str(out), "--quiet", "--set", "train.steps=4", cwd=root)
    assert first.returncode == 0, first.stderr
    return problem, out


@pytest.mark.parametrize("edit, section", [
    ("train.max_time=100", None),  # the same problem with another budget: resumes
    ("model.width=17", "[model]"),
    ("exact.u=\"x*(1-x)*y*(1-y)*z*(1-z)\"", "[exact]"),
    ("quadrature.cells=[4, 4, 4]", "training rule ([quadrature])"),
    ("train.dtype=\"float64\"", "training schedule (optimisers and dtypes), train.seed or train.sampling"),
])
def test_resume_refuses_a_checkpoint_of_another_problem_in_one_line(four_step_run, tmp_path, edit, section):
    small_problem, finished = four_step_run
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    copy = (out / "problem.toml").read_text()
    again = run_cli("solve", str(small_problem), "--out", str(out), "--quiet", "--resume", "--set", "train.steps=4",
                    "--set", edit, cwd=tmp_path)
    if section is None:
        assert again.returncode == 0, again.stderr
        return
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "Traceback" not in again.stderr
    assert again.stderr == f"error: --resume: {out / 'checkpoint.pt'} was written for a problem with a different {section}; " \
                           "resume it with the problem file it was trained with\n"
    assert (out / "problem.toml").read_text() == copy  # nothing written before the check
