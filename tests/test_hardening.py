"""Hardening: every user error is one line, no run hangs, a results directory belongs to one run.

Most cases call the command line's ``main`` in this process (a load-time error costs
milliseconds); a few need a real process: a stop signal, a concurrent run, a full disk.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import resource
import shutil
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch

from tests.conftest import REPO, SMALL_POISSON, trainer_for
from vpinn.commands import main
from vpinn.commands.results import LOCK, RESULTS, STATE, ResultsDirectory
from vpinn.commands.solve import SolveOptions, solve
from vpinn.commands.terminal import REPEAT_SECONDS, Stopped, TerminalObserver
from vpinn.errors import VpinnWarning
from vpinn.export import hexahedra, plot_errors, plot_loss, write_fields
from vpinn.train.checkpoint import load_checkpoint, save_checkpoint

#: more nesting than Python's recursion limit lets tomllib read
DEEP = "[" * 3000 + "]" * 3000


def cli(*arguments: str) -> tuple[int, str, str]:
    """``run.py ARGUMENTS`` in this process: exit status, stdout, stderr (VpinnWarnings printed as
    the command line prints them)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("default", VpinnWarning)
        try:
            status = main(list(arguments))
        except SystemExit as stop:  # argparse
            status = stop.code
    return status, out.getvalue(), err.getvalue()


def assert_one_line_error(status: int, stderr: str, *words: str) -> None:
    assert status != 0 and stderr.count("\n") == 1 and stderr.startswith("error: "), stderr
    assert "Traceback" not in stderr and all(w in stderr for w in words), stderr


@pytest.fixture(scope="module")
def problem(tmp_path_factory) -> str:
    """The small Poisson problem file, shared by the module's tests."""
    path = tmp_path_factory.mktemp("problem") / "small.toml"
    path.write_text(SMALL_POISSON)
    return str(path)


@pytest.fixture(scope="module")
def finished_once(problem, tmp_path_factory):
    """A finished 4-step run of the small problem (made once: about 3 s)."""
    out = tmp_path_factory.mktemp("finished") / "out"
    solve(problem, SolveOptions(output=str(out), progress=False, overrides={"train.steps": 4}), echo=lambda line: None)
    return out


@pytest.fixture
def finished(finished_once, tmp_path):
    """A copy of the finished run in ``tmp_path/out``, for a test to use up."""
    return shutil.copytree(finished_once, tmp_path / "out")


NEUMANN_ALL = 'bc=[{type="neumann", on="all"}]'
LOAD_TIME = [  # (--set KEY=VALUE ..., the key the message names)
    (["pde.type=[]"], "pde.type"),
    (["pde.type=[[1]]"], "pde.type"),
    (["model.width=100000000000"], "model.width"),
    (["model.width=60000"], "model.width"),  # 7e9 parameters
    (["model.depth=100000000"], "model.depth"),
    (["model.fourier_features=10000000000000"], "model.fourier_features"),
    (["train.seed=100000000000000000000"], "train.seed"),
    (["train.seed=-1"], "train.seed"),
    (['quadrature.rule="sobol"', "quadrature.points=2000000000"], "quadrature.points"),
    (['quadrature.rule="sobol"', "quadrature.points=64", "quadrature.seed=-1"], "quadrature.seed"),
    (["quadrature.cells=[10000000,10000000,10000000]", "quadrature.order=6"], "quadrature.cells"),
    (["quadrature.evaluation.cells=[3000000,3000000,3000000]"], "quadrature.evaluation.cells"),
    ([NEUMANN_ALL, "quadrature.boundary.cells=[536870912,536870912]", "quadrature.boundary.order=2"],
     "quadrature.boundary.cells"),  # 2^60 points per face, six faces
    (['train.memory_limit="1e400GiB"'], "train.memory_limit"),
    (['bc[0].type="neumann"', "bc[0].on=[]"], "bc[0].on"),
    (['bc=[{type="dirichlet", on=["xmin"]}, {type="neumann", on=[]}]'], "bc[1].on"),
    (["output.grid=[10000,10000,10000]"], "output.grid"),
    (["name=\"" + "n" * 300 + "\""], "name"),
    (["quadrature.order=100000000000000000000"], "quadrature.order"),
    (["model.output_scale=inf"], "model.output_scale"),
    (["train.lr=nan"], "train.lr"),
    (["train.max_time=-1"], "train.max_time"),
    (["train.log_every=0"], "train.log_every"),
    (["output.grid=[1,2,2]"], "output.grid[0]"),
    (["train.phase=[{optimizer=\"engd\", time_share=2}]"], "train.phase[0].time_share"),
    ([f"a={DEEP}"], "--set"),
]


@pytest.mark.parametrize("settings, key", LOAD_TIME, ids=[case[1] + "-" + case[0][-1][:20] for case in LOAD_TIME])
def test_load_time_errors_are_one_line_and_write_nothing(problem, tmp_path, settings, key):
    out = tmp_path / "out"
    started = time.perf_counter()
    status, _, stderr = cli("solve", problem, "--quiet", "--out", str(out), *(a for s in settings for a in ("--set", s)))
    assert_one_line_error(status, stderr, key)
    assert time.perf_counter() - started < 20 and not out.exists()


def test_traction_on_no_face_is_refused(tmp_path):
    status, _, stderr = cli("solve", str(REPO / "problems" / "elasticity_cube.toml"), "--out", str(tmp_path / "out"), "--set",
                            'bc=[{type="clamp", on=["xmin"]}, {type="traction", on=[]}]')
    assert_one_line_error(status, stderr, "bc[1].on: must name at least one face")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, words", [
    (SMALL_POISSON + f"[constants]\na = {DEEP}\n", "nested too deeply"),
    (SMALL_POISSON.replace("[model]", "[model]\nwidth2 = " + "[" * 500 + "]" * 500), "nested too deeply"),
    (SMALL_POISSON.replace("width = 16", "width = 1" + "0" * 5000), "an integer of more than 4300 digits"),
])
def test_unreadable_toml_is_one_line_naming_the_file(tmp_path, text, words):
    path = tmp_path / "deep.toml"
    path.write_text(text)
    status, _, stderr = cli("solve", str(path), "--out", str(tmp_path / "out"))
    assert_one_line_error(status, stderr, f"error: {path}: ", words)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ batches larger than the rule
def test_a_batch_larger_than_the_rule_is_capped_with_one_line(problem, tmp_path, monkeypatch):
    """The issue's hang (the sampler's loop grew without end): a batch of 1e13 on a 4,096-point
    rule now trains at b = 4,096 (and ``~`` in ``--out`` is the home directory)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    status, stdout, stderr = cli("solve", problem, "--quiet", "--out", "~/results", "--set", "train.steps=3",
                                 "--set", "train.batch=10000000000000")
    assert status == 0, stderr
    assert stderr == "warning: train.batch = 10,000,000,000,000 is larger than its rule of 4,096 points: capped to 4,096\n"
    out = tmp_path / "results"
    assert f"results in {out}/" in stdout and not (tmp_path / "~").exists()
    assert json.loads((out / "summary.json").read_text())["batch"] == 4096
    assert load_checkpoint(out / "checkpoint.pt")["history"][-1]["batch"] == 4096


def test_a_batch_no_machine_can_hold_is_one_line(problem, tmp_path):
    """A batch of 1e11 points of a 2.3e11-point rule: the first allocation fails at once."""
    status, _, stderr = cli("solve", problem, "--quiet", "--out", str(tmp_path / "out"), "--set", "train.batch=100000000000",
                            "--set", "quadrature.cells=[1024,1024,1024]", "--set", "quadrature.order=6")
    assert_one_line_error(status, stderr, "error: out of memory (it tried to allocate", "lower train.batch")
    assert status == 1


def test_second_order_minibatches_are_capped_too(problem):
    phases = [{"optimizer": "engd", "steps": 1, "gram_rule": "training", "gram_points": 10**12, "gradient_points": 10**12},
              {"optimizer": "msqn", "steps": 1, "batch": 10**12}]
    with pytest.warns(VpinnWarning) as caught:
        trainer = trainer_for(problem, {"train.steps": 2000, "train.warmup": 100, "train.phase": phases})
    assert [str(w.message).split(" =")[0] for w in caught] == [
        "train.phase[0].gradient_points", "train.phase[0].gram_points", "train.phase[1].batch"]
    engd, msqn = (p.optimizer for p in trainer.phases)
    assert (engd.gram_points, engd.gradient_points, msqn.batch) == (4096, 4096, 4096)


# ------------------------------------------------------------------ resume: every kind of edit, broken checkpoints
@pytest.mark.parametrize("edit, section", [
    ("domain.upper=[2, 1, 1]", "[domain]"),
    ("pde.coefficient=\"2\"", "[pde]"),
    ("bc[0].value=\"x*0\"", "[[bc]]"),
    ("quadrature.boundary.order=2", "training rule ([quadrature])"),
    ("train.seed=5", "training schedule (optimisers and dtypes), train.seed or train.sampling"),
])
def test_resume_after_an_edit_is_refused_before_anything_is_written(problem, finished, edit, section):
    before = {p.name: p.read_bytes() for p in finished.iterdir()}
    status, _, stderr = cli("solve", problem, "--quiet", "--resume", "--out", str(finished), "--set", "train.steps=4",
                            "--set", edit)
    assert_one_line_error(status, stderr, f"was written for a problem with a different {section}")
    assert {p.name: p.read_bytes() for p in finished.iterdir()} == before


class Evil:
    """Unpickling it would run a shell command."""

    def __reduce__(self):
        return (os.system, ("true",))


@pytest.mark.parametrize("damage, words", [
    (lambda state: {k: v for k, v in state.items() if k != "optimizers"}, "has no entry 'optimizers'"),
    (lambda state: {k: v for k, v in state.items() if k != "sizes"}, "has no valid entry 'sizes'"),
    (lambda state: {**state, "samplers": [{"size": 7, "seed": 0, "epoch": 0, "cursor": 0}]}, "does not fit this problem"),
    (lambda state: {**state, "fingerprint": ["not", "a", "table"]}, "was written for a problem with a different"),
    ("pickle", "holds Python objects other than tensors"),
    ("torch", "holds Python objects other than tensors"),
    (b"PK\x03\x04 truncated", "is not a readable checkpoint"),
])
def test_a_damaged_checkpoint_is_refused_in_one_line(problem, finished, damage, words):
    path = finished / "checkpoint.pt"
    if damage == "pickle":
        path.write_bytes(pickle.dumps({"format": 2, "x": Evil()}))
    elif damage == "torch":
        torch.save({"format": 2, "x": Evil()}, path)
    elif isinstance(damage, bytes):
        path.write_bytes(damage)
    else:
        save_checkpoint(path, damage({k: v for k, v in load_checkpoint(path).items() if k != "format"}))
    copy = (finished / "problem.toml").read_text()
    status, _, stderr = cli("solve", problem, "--quiet", "--resume", "--out", str(finished), "--set", "train.steps=4")
    assert_one_line_error(status, stderr, f"error: --resume: {path}", words)
    assert "weights_only" not in stderr and (finished / "problem.toml").read_text() == copy
    assert (finished / "summary.json").exists()  # a refused resume deletes nothing


# ------------------------------------------------------------------ one run per results directory
def test_a_fresh_run_into_a_used_directory_refuses_and_keeps_the_old_checkpoint(problem, finished):
    old = (finished / "checkpoint.pt").read_bytes()
    status, _, stderr = cli("solve", problem, "--quiet", "--out", str(finished))
    assert_one_line_error(status, stderr, f"{finished} holds another run's files (checkpoint.pt,", "--overwrite")
    assert (finished / "checkpoint.pt").read_bytes() == old


def test_every_file_a_run_writes_is_listed(finished):
    """The lists :mod:`vpinn.commands.results` deletes and protects are complete."""
    assert {p.name for p in finished.iterdir()} <= {LOCK, *STATE, *RESULTS}
    assert {"summary.json", "solution.vtu", "checkpoint.pt"} <= {p.name for p in finished.iterdir()}


@pytest.fixture
def sigterm_at_once(monkeypatch):
    """Every run is stopped by a SIGTERM right after its first step."""
    enter = TerminalObserver.__enter__

    def stopped(observer):
        enter(observer)
        observer.signal = signal.SIGTERM
        return observer

    monkeypatch.setattr(TerminalObserver, "__enter__", stopped)


@pytest.mark.parametrize("start", ["--overwrite", "--resume"])
def test_an_interrupted_run_leaves_no_older_results_beside_its_own(problem, finished, sigterm_at_once, start):
    old = load_checkpoint(finished / "checkpoint.pt")
    status, stdout, stderr = cli("solve", problem, "--quiet", start, "--out", str(finished), "--set", "train.steps=8")
    assert status == 143 and "interrupted by SIGTERM at step" in stdout and stderr == "", stderr
    assert {p.name for p in finished.iterdir()} == {LOCK, *STATE}
    done = load_checkpoint(finished / "checkpoint.pt")["done"]
    assert done == ([1] if start == "--overwrite" else [old["done"][0] + 1])


def test_overwrite_and_resume_exclude_each_other(problem, finished):
    status, _, stderr = cli("solve", problem, "--resume", "--overwrite", "--out", str(finished))
    assert status == 2 and stderr.count("\n") == 1 and "not allowed with argument" in stderr


def test_a_run_into_a_locked_directory_refuses(problem, tmp_path):
    out = tmp_path / "out"
    with ResultsDirectory(out):
        status, _, stderr = cli("solve", problem, "--quiet", "--out", str(out))
    assert_one_line_error(status, stderr, f"{out}: another run (process {os.getpid()}) is writing to this directory")
    assert {p.name for p in out.iterdir()} == {LOCK}


def test_a_second_stop_signal_stops_at_once():
    observer = TerminalObserver(progress=False)
    observer._request_stop(signal.SIGTERM, None)
    assert observer.stop_requested() == "interrupted" and observer.signal == signal.SIGTERM
    observer._request_stop(signal.SIGTERM, None)  # at once: the same signal forwarded again (torchrun)
    observer._signalled_at -= 2 * REPEAT_SECONDS  # later: a second signal
    with pytest.raises(Stopped) as stop:
        observer._request_stop(signal.SIGTERM, None)
    assert stop.value.signum == signal.SIGTERM


def test_sigterm_mid_adam_checkpoints_and_resumes_bit_identically(problem, tmp_path):
    """A concurrent second run into the same directory refuses; SIGTERM stops the first after its
    step with a checkpoint and the history (exit 143); resuming it for 3 more steps gives the
    weights of one uninterrupted run (a constant learning rate: the schedule does not depend on
    the step count)."""
    out = tmp_path / "out"
    settings = {"train.decay": "constant", "train.checkpoint_every": 10**6}
    command = [sys.executable, str(REPO / "run.py"), "solve", problem, "--out", str(out), "--quiet",
               "--set", "train.steps=1000000", *(a for k, v in settings.items() for a in ("--set", f"{k}={v!r}"))]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        process.stdout.readline()  # printed when training starts
        status, _, stderr = cli("solve", problem, "--quiet", "--out", str(out))
        assert_one_line_error(status, stderr, "another run (process", "is writing to this directory")
        time.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143 and "interrupted by SIGTERM at step" in stdout and "Traceback" not in stderr, stderr
    stopped = load_checkpoint(out / "checkpoint.pt")
    steps = stopped["done"][0]
    assert steps > 0 and (out / "history.csv").read_text().count("\n") >= 1
    resumed = solve(problem, SolveOptions(resume=True, output=str(out), progress=False,
                                          overrides={**settings, "train.steps": steps + 3}), echo=lambda line: None)
    assert resumed["steps"] == {"adam": steps + 3}
    whole = trainer_for(problem, {**settings, "train.steps": steps + 3})
    whole.run()
    final = load_checkpoint(out / "checkpoint.pt")["model"]
    assert all(torch.equal(final[name], value) for name, value in whole.network.state_dict().items())


# ------------------------------------------------------------------ operating-system errors
def test_out_naming_a_file_a_path_below_a_file_or_a_read_only_place(problem, tmp_path):
    (tmp_path / "file").write_text("x")
    for out, words in [(tmp_path / "file", "not a directory"),
                       (tmp_path / "file" / "below", "cannot create the results directory (Not a directory)"),
                       (tmp_path / ("n" * 300), "(File name too long)"),
                       ("/sys/vpinn-results", "cannot create the results directory")]:
        status, _, stderr = cli("solve", problem, "--quiet", "--out", str(out))
        assert_one_line_error(status, stderr, str(out), words)
    assert (tmp_path / "file").read_text() == "x"


def test_a_full_disk_is_one_line_naming_the_file_and_the_old_checkpoint_survives(problem, finished):
    """A file-size limit (what a full disk looks like to the writer) makes the next checkpoint's
    write fail: one line naming checkpoint.pt and the reason, exit status 1, the old checkpoint intact."""
    old = (finished / "checkpoint.pt").read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(old) // 2, hard))  # Python ignores SIGXFSZ: writes fail with EFBIG
    try:
        status, _, stderr = cli("solve", problem, "--quiet", "--resume", "--out", str(finished), "--set", "train.steps=8")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert status == 1 and stderr == f"error: {finished / 'checkpoint.pt'}: File too large\n", stderr
    assert (finished / "checkpoint.pt").read_bytes() == old
    assert not list(finished.glob(".*.tmp"))


def test_history_plots_of_a_run_without_steps_raise_no_warning(tmp_path):
    """``steps = 0``: no errors were recorded; the plots say so instead of a matplotlib warning
    (warnings are errors in the test suite)."""
    plot_errors(tmp_path / "error.png", [])
    plot_loss(tmp_path / "loss.png", [], None)
    assert (tmp_path / "error.png").stat().st_size > 0 and (tmp_path / "loss.png").stat().st_size > 0


def test_non_finite_values_in_a_vtu_warn_in_one_line(tmp_path):
    points = np.stack(np.meshgrid(*[np.linspace(0, 1, 2)] * 3, indexing="ij"), -1).reshape(-1, 3)
    u = np.zeros(8)
    u[[1, 5]] = [np.nan, np.inf]
    with pytest.warns(VpinnWarning, match=r"solution.vtu: 2 of 8 values of u are NaN or infinite$"):
        write_fields(tmp_path / "solution.vtu", points, [("hexahedron", hexahedra((2, 2, 2)))], {"u": u, "v": np.ones(8)})
    assert (tmp_path / "solution.vtu").exists()

