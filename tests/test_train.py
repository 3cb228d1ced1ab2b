"""Training loop: schedules, exact resumption, divergence handling, time budget, Ctrl-C."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import REPO
from vpinn.errors import TrainingDiverged
from vpinn.problem import load_problem
from vpinn.problem.spec import TrainSpec
from vpinn.setup import build_setup
from vpinn.train import Trainer, learning_rate
from vpinn.train.checkpoint import load_checkpoint


def test_warmup_then_cosine_decay():
    spec = TrainSpec(steps=101, warmup=10, lr=1e-2, lr_final=1e-4, decay="cosine")
    assert learning_rate(0, spec) == pytest.approx(1e-3)
    assert learning_rate(9, spec) == pytest.approx(1e-2)
    assert learning_rate(10, spec) == pytest.approx(1e-2)
    assert learning_rate(55, spec) == pytest.approx((1e-2 + 1e-4) / 2)
    assert learning_rate(100, spec) == pytest.approx(1e-4)
    values = [learning_rate(s, spec) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_exponential_and_constant_decay():
    spec = TrainSpec(steps=11, warmup=0, lr=1e-2, lr_final=1e-4, decay="exponential")
    assert learning_rate(5, spec) == pytest.approx(1e-3)
    assert learning_rate(10, spec) == pytest.approx(1e-4)
    assert learning_rate(7, TrainSpec(steps=11, warmup=0, lr=3e-3, decay="constant")) == 3e-3


def trainer_for(problem, overrides=None, checkpoint=None, **options) -> Trainer:
    spec = load_problem(problem, {"train.lbfgs.iterations": 4, **(overrides or {})})
    return Trainer(build_setup(spec, torch.device("cpu")), checkpoint, progress=False, **options)


def stop_at(trainer: Trainer, step: int, action) -> None:
    """Run ``action(trainer)`` right after Adam step ``step``."""
    original = trainer.training_step

    def step_then_act():
        out = original()
        if trainer.step == step:
            action(trainer)
        return out

    trainer.training_step = step_then_act


def test_resumed_run_equals_uninterrupted_run(small_problem, tmp_path):
    """Interrupt after 13 Adam steps, resume: same weights as one run (Adam + L-BFGS phases)."""
    whole = trainer_for(small_problem)
    whole.run()

    first = trainer_for(small_problem, checkpoint=tmp_path / "c.pt")
    stop_at(first, 13, lambda t: setattr(t, "_stop", "interrupted"))
    assert first.run().status == "interrupted"
    assert load_checkpoint(tmp_path / "c.pt")["step"] == 13

    second = trainer_for(small_problem, checkpoint=tmp_path / "c.pt")
    second.resume(tmp_path / "c.pt")
    result = second.run()
    assert result.status == "completed" and (result.steps, result.iterations) == (20, 4)
    for a, b in zip(whole.setup.field.parameters(), second.setup.field.parameters()):
        assert a.dtype == b.dtype == torch.float64 and torch.equal(a, b)
    # The resumed history is the uninterrupted one plus the row written at the interruption.
    assert [r["step"] for r in second.history] == sorted([r["step"] for r in whole.history] + [13])


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(small_problem, tmp_path):
    trainer = trainer_for(small_problem, checkpoint=tmp_path / "c.pt")

    def poison(t):
        with torch.no_grad():
            t.setup.field.weights[0].fill_(float("nan"))

    stop_at(trainer, 12, poison)  # checkpoints at step 10; NaN appears at step 13, logged at 15
    with pytest.raises(TrainingDiverged, match="loss became nan at adam step 15"):
        trainer.run()
    state = load_checkpoint(tmp_path / "c.pt")
    assert state["step"] == 10
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_time_budget_ends_training(small_problem):
    trainer = trainer_for(small_problem, {"train.steps": 10**6, "train.lbfgs.iterations": 10**6}, max_time=2.0)
    started = time.perf_counter()
    result = trainer.run()
    assert result.status == "time limit" and 0 < result.steps < 10**6 and result.iterations > 0
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
    assert "interrupted at step" in stdout and "Traceback" not in stderr
    stopped_at = load_checkpoint(out / "checkpoint.pt")["step"]
    assert stopped_at > 0
    resumed = subprocess.run(command + ["--resume", "--max-time", "1"], capture_output=True, text=True, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming small at adam step {stopped_at}" in resumed.stdout
    assert load_checkpoint(out / "checkpoint.pt")["step"] > stopped_at
    assert (out / "summary.json").exists()


def test_same_seed_same_weights_other_seed_other_weights(small_problem):
    runs = [trainer_for(small_problem, {"train.seed": seed, "train.lbfgs.iterations": 0}) for seed in (3, 3, 4)]
    for trainer in runs:
        for _ in range(5):
            trainer.training_step()
    first, again, other = ([p.detach() for p in t.setup.field.parameters()] for t in runs)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_resume_without_a_checkpoint_is_a_one_line_error(small_problem, tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "run.py"), "solve", str(small_problem), "--resume",
                           "--out", str(tmp_path / "none")], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip() == f"error: --resume: no checkpoint at {tmp_path / 'none' / 'checkpoint.pt'}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_asking_for_cuda_without_it_is_a_one_line_error(small_problem, tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "run.py"), "solve", str(small_problem), "--device", "cuda",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip() == "error: --device cuda: CUDA is not available on this machine"
