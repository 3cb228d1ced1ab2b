"""Data parallelism: two CPU ranks (gloo) against one process, sharded sampling, compression hooks.

The two-process runs are started once per module by ``torchrun`` (:mod:`distributed_worker`);
the one-process references run in this process.  The dither hook's statistics are checked on
its encode/decode functions with many simulated ranks and rounds.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import REPO, SMALL_POISSON
from distributed_worker import BATCH, COMPRESSION_STEPS, EXACT, SECOND_ORDER, STEPS, StopAfter
from vpinn.assemble import assemble, build_trainer
from vpinn.distributed import Group, ShardedSampler, dither
from vpinn.distributed.compensate import calibrate
from vpinn.errors import ProblemFileError, VpinnWarning
from vpinn.problem import load_problem, parse_problem
from vpinn.problem.spec import DEFAULT_BATCH
from vpinn.sampling import UniformSampler
from vpinn.train.checkpoint import load_checkpoint
from vpinn.train.oom import OutOfMemoryBackoff
from vpinn.train.optimizers import StepReport, TrainingProblem

WORKER = Path(__file__).with_name("distributed_worker.py")
#: the small problem with a [[train.phase]] schedule (the worker sets the phases)
PHASES = SMALL_POISSON.replace("steps = 20\n", "").replace("warmup = 5\n", "") + \
    '[[train.phase]]\noptimizer = "adam"\n'


def _environment() -> dict:
    """This checkout's vpinn first on the path of the processes a test starts."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    """The directory of the worker's outputs after one ``torchrun`` of two ranks."""
    out = tmp_path_factory.mktemp("two_ranks")
    (out / "small.toml").write_text(SMALL_POISSON)
    (out / "phases.toml").write_text(PHASES)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER),
               str(out / "small.toml"), str(out / "phases.toml"), str(out)]
    launch = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_environment(),
                              cwd=out)
    ready, deadline = out / "ready", time.monotonic() + 120
    while not ready.exists() and launch.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if ready.exists():
        os.kill(int(ready.read_text()), signal.SIGINT)  # Ctrl-C on rank 1 only
    _, errors = launch.communicate(timeout=120)
    assert launch.returncode == 0 and ready.exists(), errors[-3000:]
    return out


def _parameters(state: dict) -> dict[str, torch.Tensor]:
    return {name: value for name, value in state["model"].items() if value.is_floating_point() and value.numel()}


def _assert_close(a: dict, b: dict) -> None:
    for name in b:
        torch.testing.assert_close(a[name], b[name], rtol=1e-10, atol=1e-14, msg=name)


def _one_process(two_ranks: Path, stop_after: int | None = None):
    """A trainer of the worker's float64 run in this process, at the global batch 2b."""
    spec = load_problem(two_ranks / "small.toml", {**EXACT, "train.batch": 2 * BATCH})
    return build_trainer(spec, assemble(spec, torch.device("cpu")), observer=stop_after and StopAfter(stop_after))


def test_two_ranks_take_the_steps_of_one_process_with_the_same_global_batch(two_ranks):
    """Two ranks of batch b sum their halves of each global batch of 2b: after STEPS float64 Adam
    steps the parameters equal those of one process of batch 2b (rtol 1e-10)."""
    one = _one_process(two_ranks, stop_after=STEPS)
    one.run()
    two = load_checkpoint(two_ranks / "two.pt")
    assert two["world_size"] == 2 and two["done"] == [STEPS]
    _assert_close(_parameters(two), _parameters(one.state_dict()))


def test_a_checkpoint_of_two_ranks_resumes_on_one_and_continues_identically(two_ranks):
    """Resuming the two-rank checkpoint in one process (batch 2b) for its last STEPS steps gives
    the parameters of one process that ran all 2 STEPS steps."""
    resumed = _one_process(two_ranks)
    resumed.load_state_dict(load_checkpoint(two_ranks / "two.pt"))
    resumed.run()
    straight = _one_process(two_ranks)
    straight.run()
    assert resumed.done == straight.done == [2 * STEPS]
    _assert_close(_parameters(resumed.state_dict()), _parameters(straight.state_dict()))


def test_second_order_steps_on_two_ranks_follow_one_process(two_ranks):
    """Adam, then ENGD (Gram matrix of the auxiliary rule split between the ranks and summed),
    exact MSQN and L-BFGS (full-rule gradients split and summed): every step length the line
    searches choose is the same as in one process of batch 2b, and each parameter tensor ends
    within 1e-6 of that run's, relative to its largest entry (the sums run in another order, and
    ENGD's damped Gram solve, of condition up to 1e20, turns that rounding of 1e-16 into about
    5e-9)."""
    spec = load_problem(two_ranks / "phases.toml", {**SECOND_ORDER, "train.batch": 2 * BATCH})
    one = build_trainer(spec, assemble(spec, torch.device("cpu")))
    one.run()
    two = load_checkpoint(two_ranks / "second_order.pt")
    assert two["done"] == one.done == [10, 3, 3, 3]
    assert [row["lr"] for row in two["history"]] == pytest.approx([row["lr"] for row in one.history], nan_ok=True)
    for name, value in _parameters(one.state_dict()).items():
        assert float((two["model"][name] - value).abs().max() / value.abs().max()) < 1e-6, name


def test_a_time_limit_on_one_rank_stops_both_at_the_same_step(two_ranks):
    statuses = [json.loads((two_ranks / f"time_{rank}.json").read_text()) for rank in (0, 1)]
    assert [s["status"] for s in statuses] == ["time limit", "time limit"]
    assert statuses[0]["steps"] == statuses[1]["steps"] and statuses[0]["steps"]["adam"] < 10**6


@pytest.mark.parametrize("name", ["fp16", "bf16", "powersgd", "dither"])
def test_compressed_runs_train_and_report_the_bytes_they_send(two_ranks, name):
    """The loss falls over COMPRESSION_STEPS steps, and each logged step reports its payload:
    2 bytes per coordinate for fp16/bf16, a low-rank fraction for powersgd after its 10
    uncompressed steps, 1 byte (int8 codes) plus one float32 maximum per parameter tensor for
    dither; plus the loss and its term summed exactly in float64 (16 bytes)."""
    run = json.loads((two_ranks / f"{name}.json").read_text())
    history, parameters = run["history"], run["parameters"]
    assert history[-1]["loss"] < history[0]["loss"] - 0.1 * abs(history[0]["loss"])
    last = history[-1]["comm_bytes"]
    expected = {"fp16": 2 * parameters + 16, "bf16": 2 * parameters + 16, "dither": parameters + 4 * run["tensors"] + 16}
    if name == "powersgd":
        assert history[0]["comm_bytes"] == 4 * parameters + 16  # before its start: plain float32 sums
        assert 16 < last < 0.5 * 4 * parameters
    else:
        assert last == expected[name]
    assert history[-1]["step"] == COMPRESSION_STEPS


def test_ctrl_c_on_one_rank_stops_both_with_a_checkpoint(two_ranks):
    """SIGINT to rank 1 alone, under the command layer's handler: both ranks stop after the same
    step and rank 0 saves the checkpoint, which records two ranks."""
    statuses = [json.loads((two_ranks / f"interrupt_{rank}.json").read_text()) for rank in (0, 1)]
    assert [s["status"] for s in statuses] == ["interrupted", "interrupted"]
    assert statuses[0]["steps"] == statuses[1]["steps"]
    state = load_checkpoint(two_ranks / "interrupted.pt")
    assert state["world_size"] == 2 and state["done"] == [statuses[0]["steps"]["adam"]]


def test_the_ranks_of_a_sharded_sampler_split_one_global_batch():
    """K ranks' slices are disjoint and together the K b indices one sampler draws, with the
    global factor N / (K b); the shared state continues where one sampler would."""
    size, batch, ranks = 1000, 64, 3
    reference = UniformSampler(size, "cpu", 5)
    shards = []
    for rank in range(ranks):
        group = Group()
        group.rank, group.size = rank, ranks
        shards.append(ShardedSampler(UniformSampler(size, "cpu", 5), group))
    for _ in range(20):  # 20 x 192 points: several epochs
        expected, factor = reference.sample(ranks * batch)
        drawn = [shard.sample(batch) for shard in shards]
        assert torch.equal(torch.cat([index for index, _ in drawn]), expected)
        assert all(f == factor == size / (ranks * batch) for _, f in drawn)
    assert shards[2].state_dict() == reference.state_dict() and shards[0].epochs == reference.epochs


@pytest.mark.parametrize("count, size", [(10, 3), (2, 3), (4096, 2)])
def test_the_ranks_share_a_range_in_contiguous_nearly_equal_parts(count, size):
    parts = []
    for rank in range(size):
        group = Group()
        group.rank, group.size = rank, size
        parts.append(group.share(count))
    assert parts[0][0] == 0 and parts[-1][1] == count
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    assert max(b - a for a, b in parts) - min(b - a for a, b in parts) <= 1


def test_dithered_sums_are_unbiased_with_variance_k_delta_squared_over_12():
    """K = 4 simulated ranks, 4,000 rounds of one fixed gradient per rank (256 coordinates):
    every coordinate's mean error is within 4 standard errors of 0, and the error variance,
    pooled over coordinates, is K delta^2 / 12 within 10 %."""
    ranks, size, rounds, bits = 4, 256, 4000, 4
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(ranks, size, generator=generator, dtype=torch.float64)
    delta = dither.step_size(values.abs().amax(), bits)
    dtype = dither.transport_dtype(bits, ranks)
    assert dtype == torch.int8  # 4 ranks x 7 levels fit in int8
    errors = torch.empty(rounds, size, dtype=torch.float64)
    for k in range(rounds):
        noise = dither.dithers(generator, ranks, size, torch.float64, "cpu")
        codes = torch.stack([dither.encode(values[r], delta, noise[r], dtype) for r in range(ranks)])
        assert int(codes.abs().max()) <= dither.levels(bits)
        code_sum = codes.to(torch.int64).sum(0).to(dtype)  # what an int8 all-reduce returns
        errors[k] = dither.decode(code_sum, delta, noise.sum(0)) - values.sum(0)
    standard_error = errors.std(0) / rounds**0.5
    assert (errors.mean(0).abs() < 4 * standard_error).float().mean() > 0.999
    assert float(errors.mean(0).abs().max() / standard_error.max()) < 5
    expected = ranks * float(delta) ** 2 / 12
    assert float(errors.var(0).mean()) == pytest.approx(expected, rel=0.1)


def test_the_transport_type_keeps_the_sum_of_the_codes_exact():
    assert dither.transport_dtype(6, 4) == torch.int8  # 4 x 31 = 124
    assert dither.transport_dtype(8, 2) == torch.float16  # 2 x 127 = 254 <= 2048
    assert dither.transport_dtype(12, 2) == torch.float32
    top = 2 * dither.levels(8)
    assert float(torch.tensor(float(top), dtype=torch.float16)) == top


def test_compensation_alone_keeps_the_batch_and_measures_the_sampling_variance(small_problem):
    """In a process on its own nothing is quantised: factor 1.  The sampling variance is that of
    the minibatch gradients: positive at b = 64, smaller at b = 1024, and zero to rounding at
    b = N = 4096, where every batch is the whole rule."""
    from conftest import assembled

    measured = {b: calibrate(assembled(small_problem, {"train.batch": b})[1], 6, 0, rounds=4) for b in (64, 1024, 4096)}
    assert measured[64].quantisation_variance == 0 and measured[64].factor == 1
    assert measured[1024].sampling_variance < measured[64].sampling_variance
    assert measured[4096].sampling_variance < 1e-20 * measured[64].sampling_variance


def test_compensate_needs_the_dither_and_bits_are_bounded():
    base = SMALL_POISSON.replace("[train]\n", "[train]\ncompensate = true\n")
    with pytest.raises(ProblemFileError, match="train.compensate: needs compression = \"dither\""):
        parse_problem(base, "case.toml")
    with pytest.raises(ProblemFileError, match="train.bits: must be between 2 and 16"):
        parse_problem(base.replace("compensate = true", "compression = \"dither\"\nbits = 1"), "case.toml")
    assert parse_problem(base.replace("compensate = true", "compression = \"dither\"\ncompensate = true"),
                         "case.toml").train.compensate


def test_a_file_without_a_batch_gets_the_devices_default(tmp_path):
    path = tmp_path / "nobatch.toml"
    path.write_text(SMALL_POISSON.replace("batch = 256\n", ""))
    spec = load_problem(path)
    assert spec.train.batch is None
    assert spec.train.on_device("cpu").batch == DEFAULT_BATCH["cpu"] == 8192
    assert spec.train.on_device("cuda").batch == DEFAULT_BATCH["cuda"] > 10 * DEFAULT_BATCH["cpu"]
    assert load_problem(path, {"train.batch": 100}).train.on_device("cuda").batch == 100
    assert assemble(spec, torch.device("cpu")).terms[0].batch == 4096  # the default, capped silently at the rule's size


class _RunsOutOfMemory:
    """An optimiser whose first ``failures`` steps raise CUDA's out-of-memory error; with
    ``batch`` it has a batch plan (a minibatch phase), else only a chunk (a full-rule phase)."""

    def __init__(self, problem: TrainingProblem, failures: int, batch: int | None = None):
        self.problem, self.failures, self.seen = problem, failures, []
        if batch is not None:
            self.plan = SimpleNamespace(micro=2**62, batches=[batch])

    def step(self) -> StepReport:
        self.seen.append(self.plan.micro if hasattr(self, "plan") else self.problem.chunk)
        if self.failures:
            self.failures -= 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return StepReport(0.0, 0.0, 1.0, 0)


def test_out_of_memory_halves_the_micro_batch_or_chunk_says_so_in_one_line_and_goes_on(small_problem):
    from conftest import assembled

    _, assembly = assembled(small_problem)
    problem = TrainingProblem(list(assembly.field.parameters()), assembly.trial, assembly.terms, assembly.samplers,
                              1000, torch.device("cpu"))
    minibatch, full = _RunsOutOfMemory(problem, failures=2, batch=256), _RunsOutOfMemory(problem, failures=1)
    with pytest.warns(VpinnWarning) as caught:
        OutOfMemoryBackoff(minibatch, "adam").step()
        OutOfMemoryBackoff(full, "engd").step()
    assert minibatch.seen == [2**62, 128, 64] and minibatch.plan.batches == [256]  # the same batch, in pieces
    assert full.seen == [1000, 500] and full.problem.chunk == 500
    assert [str(w.message) for w in caught] == [
        "CUDA out of memory in a adam step: micro-batch 256 -> 128 points; going on",
        "CUDA out of memory in a adam step: micro-batch 128 -> 64 points; going on",
        "CUDA out of memory in a engd step: chunk 1,000 -> 500 points; going on"]
    with pytest.raises(torch.OutOfMemoryError):  # nothing left to halve: the error ends the run
        OutOfMemoryBackoff(_RunsOutOfMemory(dataclasses.replace(problem, chunk=1), failures=1), "engd").step()


CUDA = pytest.mark.skipif(not torch.cuda.is_available(),
                          reason="needs a CUDA device (none on this machine): checks the GPU step and its memory")


def _cuda_trainer(problem: Path, overrides: dict):
    spec = load_problem(problem, overrides)
    return build_trainer(spec, assemble(spec, torch.device("cuda")))


@CUDA
def test_adam_steps_on_cuda_never_synchronise_with_the_host(small_problem):
    """``set_sync_debug_mode("error")`` turns any device-to-host synchronisation inside the
    steps (sampling, the estimate, backward, clipping, fused Adam) into an error."""
    optimizer = _cuda_trainer(small_problem, {"train.batch": 4096, "train.phase": []}).phases[0].optimizer
    optimizer.step()  # first step: lazy initialisation of the optimiser's state
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            optimizer.step()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()


@CUDA
def test_a_batch_too_large_for_the_card_is_halved_until_it_fits(small_problem):
    free, _ = torch.cuda.mem_get_info()
    too_large = 1 << int(free // 1000).bit_length()  # ~3 KB per point: more than the card holds
    trainer = _cuda_trainer(small_problem, {"train.batch": too_large, "train.steps": 2})
    with pytest.warns(VpinnWarning, match="CUDA out of memory in a adam step"):
        result = trainer.run()
    assert result.steps == {"adam": 2} and trainer.phases[0].optimizer.optimizer.plan.micro < too_large


def test_scale_refuses_unknown_compressions_and_too_few_steps_in_one_line(small_problem, capsys):
    from vpinn.commands import main

    assert main(["scale", str(small_problem), "--compression", "none,zip"]) == 2
    assert main(["scale", str(small_problem), "--steps", "5"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["error: --compression: unknown compression 'zip' (choose from none, fp16, bf16, powersgd, dither)",
                     "error: --steps: at least 20, so that two logged steps time the run, not 5"]


@pytest.mark.slow
def test_scale_writes_a_row_per_process_count_and_compression(tmp_path):
    """``run.py scale`` on the small problem: one row for one process, one per compression for
    two, each with its time, throughput, bytes and error after the same steps."""
    (tmp_path / "phases.toml").write_text(PHASES)
    done = subprocess.run([sys.executable, str(REPO / "run.py"), "scale", "phases.toml", "--nproc", "1,2",
                           "--compression", "none,dither", "--steps", "20", "--out", "scale"],
                          capture_output=True, text=True, cwd=tmp_path, env=_environment(), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    with open(tmp_path / "scale" / "scale.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["nproc"], r["compression"]) for r in rows] == [("1", "none"), ("2", "none"), ("2", "dither")]
    assert [int(r["global_batch"]) for r in rows] == [256, 512, 512]
    assert int(rows[0]["bytes_per_step"]) == 0 < int(rows[2]["bytes_per_step"]) < int(rows[1]["bytes_per_step"])
    assert all(float(r["ms_per_step"]) > 0 and float(r["rel_l2"]) < 1 and r["steps"] == "20" for r in rows)


class _Pair(Group):
    """Rank ``rank`` of two simulated ranks: ``gather_rows`` returns both ranks' rows, which the
    test puts in ``shared`` before either rank observes (as a real all-gather would wait)."""

    def __init__(self, rank: int, shared: dict):
        super().__init__()
        self.rank, self.size, self.shared = rank, 2, shared

    def gather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        assert torch.equal(rows, self.shared[self.rank])
        return torch.cat([self.shared[0], self.shared[1]])


def test_sharded_adaptive_samplers_learn_from_the_whole_global_batch_and_stay_identical():
    """Two ranks' copies of a stratified sampler with Neyman allocation (points carry their own
    factors): summed over the ranks the estimate is the single process's of batch 2b, and with
    each global batch's contributions gathered both copies keep the single sampler's state."""
    from vpinn.geometry import Box
    from vpinn.quadrature import GaussRule
    from vpinn.sampling import StratifiedSampler

    rule = GaussRule(Box((0, 0, 0), (1, 1, 1)).volume_map(), (8, 8, 8), 2)
    values = lambda index: (rule.take(index, torch.float64).points ** 2).sum(1) + 1  # noqa: E731
    make = lambda: StratifiedSampler(rule, "cpu", 3, strata=16, allocation="neyman", refresh_every=2, mix=0.1)  # noqa: E731
    single, shared = make(), {}
    ranks = [ShardedSampler(make(), _Pair(r, shared)) for r in (0, 1)]
    for _ in range(6):
        index, factor = single.sample(128)
        single.observe(values(index))
        drawn = [shard.sample(64) for shard in ranks]
        total = sum(float((f * values(i)).sum()) for i, f in drawn)
        assert total == pytest.approx(float((factor * values(index)).sum()), rel=1e-13)
        shared.update({r: values(drawn[r][0])[:, None] for r in (0, 1)})
        for shard, (i, _) in zip(ranks, drawn):
            shard.observe(values(i))
    expected = single.state_dict()
    for shard in ranks:
        state = shard.sampler.state_dict()
        assert state.keys() == expected.keys()
        for key, value in expected.items():
            if isinstance(value, str):
                assert state[key] == value
            else:
                torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)
