"""Problem files: defaults, and one-line errors that name the file, line and key."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO, SMALL_POISSON, error_of, run_cli
from vpinn.errors import ProblemFileError
from vpinn.problem import load_problem, parse_problem


def test_bundled_problems_load():
    for path in sorted((REPO / "problems").glob("*.toml")):
        spec = load_problem(path)
        assert spec.name == path.stem


def test_defaults_fill_missing_sections():
    spec = parse_problem('name = "bare"\n[exact]\nu = "x*(1-x)"\n')
    assert spec.model.width == 64 and spec.train.dtype == "float32" and spec.pde.source == "auto"


def test_partial_rule_tables_keep_their_own_defaults():
    """A sub-table that sets some keys takes the rest from its own default rule, not a generic one."""
    spec = parse_problem('name = "partial"\n[exact]\nu = "x"\n[quadrature.evaluation]\norder = 5\n[quadrature.boundary]\norder = 4\n')
    assert (spec.quadrature.evaluation.cells, spec.quadrature.evaluation.order) == ((12, 12, 12), 5)
    assert (spec.quadrature.boundary.cells, spec.quadrature.boundary.order) == ((32, 32), 4)
    assert (spec.quadrature.finish.cells, spec.quadrature.finish.order) == ((12, 12, 12), 3)


@pytest.mark.parametrize(
    "old, new, key, marker, words",
    [
        ("steps = 20", "stesp = 20", "train.stesp", "stesp = 20", "did you mean 'steps'"),
        ("steps = 20", 'steps = "many"', "train.steps", 'steps = "many"', "must be an integer"),
        ("batch = 256", "batch = 2.5", "train.batch", "batch = 2.5", "must be an integer"),
        ("width = 16", "width = true", "model.width", "width = true", "must be an integer"),
        ('u = "sin(pi*x)*sin(pi*y)*sin(pi*z)"', 'u = "sin(pi*x"', "exact.u", 'u = "sin(pi*x"', "syntax error"),
        ('u = "sin(pi*x)*sin(pi*y)*sin(pi*z)"', "u = \"__import__('os').system('true')\"", "exact.u",
         "u = \"__import__('os').system('true')\"", "only plain function names"),
        ('u = "sin(pi*x)*sin(pi*y)*sin(pi*z)"', "u = \"__import__('os')\"", "exact.u", "u = \"__import__('os')\"",
         "unknown function '__import__'"),
        ('source = "auto"', 'source = "x.__class__"', "pde.source", 'source = "x.__class__"', "Attribute is not allowed"),
        ("cells = [8, 8, 8]", "cells = [8, 8]", "quadrature.cells", "cells = [8, 8]", "must have 3 entries"),
        ("order = 2\n[quadrature.finish]", "order = 9\n[quadrature.finish]", "quadrature.order", "order = 9", "between 1 and 6"),
        ('on = "all"', 'on = ["xmin", "top"]', "bc[0].on[1]", 'on = ["xmin", "top"]', "unknown face 'top'"),
        ('type = "box"', 'type = "ball"', "domain.type", 'type = "ball"', "must be one of 'box'"),
        ("[model]", "[modle]", "modle", "[modle]", "did you mean 'model'"),
        ("[train]", '[train]\nlbfgs.dtype = "float16"', "train.lbfgs.dtype", 'lbfgs.dtype = "float16"', "must be one of"),
        ("[train]", "[train]\nsnr_threshold = -1", "train.snr_threshold", "snr_threshold = -1", "0 (off) or positive"),
    ],
)
def test_user_errors_name_the_key_and_line(old, new, key, marker, words):
    assert old in SMALL_POISSON
    text = SMALL_POISSON.replace(old, new, 1)
    line = text.splitlines().index(marker) + 1
    error = error_of(text)
    assert (error.key, error.line) == (key, line) and words in error.reason
    assert str(error).startswith(f"case.toml:{line}: {key}: ")


def test_cross_section_errors():
    no_exact = SMALL_POISSON.replace('[exact]\nu = "sin(pi*x)*sin(pi*y)*sin(pi*z)"\n', "")
    assert error_of(no_exact).key == "pde.source"
    twice = SMALL_POISSON.replace("[quadrature]", '[[bc]]\ntype = "neumann"\non = "xmin"\n[quadrature]')
    assert "already has a condition" in error_of(twice).reason


def test_toml_syntax_error_gives_the_line():
    text = SMALL_POISSON.replace("width = 16", "width = = 16")
    error = error_of(text)
    assert error.line == text.splitlines().index("width = = 16") + 1 and "not valid TOML" in error.reason


def test_overrides_reach_array_entries_and_reject_non_tables(small_problem):
    spec = load_problem(small_problem, {"bc[0].value": "x*(1-x)", "train.steps": 7})
    assert spec.bc[0].value.text == "x*(1-x)" and spec.train.steps == 7
    for key, words in [("name.x", "'name' is not a table"), ("bc.type", "'bc' is an array: name an entry, e.g. bc[0]"),
                       ("bc[3].value", "the file has no entry bc[3]")]:
        with pytest.raises(ProblemFileError, match=re.escape(f"{key}: {words}")):
            load_problem(small_problem, {key: "0"})


@pytest.mark.parametrize("name", ["..", ".", "a/b", ""])
def test_names_that_are_not_plain_file_names_are_rejected(small_problem, name):
    with pytest.raises(ProblemFileError, match="name: must be a non-empty file-name-safe string"):
        load_problem(small_problem, {"name": name})


def test_overrides_are_validated(small_problem):
    assert load_problem(small_problem, {"train.batch": 1e3}).train.batch == 1000
    with pytest.raises(ProblemFileError, match="train.batch: must be an integer"):
        load_problem(small_problem, {"train.batch": "x"})


@pytest.mark.parametrize("bad", ["steps = -3", 'u = "__import__(\'os\')"', "unknown_key = 1"])
def test_cli_prints_one_line_and_exits_nonzero(tmp_path, bad):
    text = SMALL_POISSON.replace("[train]", f"[train]\n{bad}") if "steps" in bad or "unknown" in bad else \
        SMALL_POISSON.replace('u = "sin(pi*x)*sin(pi*y)*sin(pi*z)"', bad)
    path = tmp_path / "bad.toml"
    path.write_text(text)
    done = run_cli("solve", str(path), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"error: {path}:")
    assert "Traceback" not in done.stderr and not (tmp_path / "out" / "summary.json").exists()
