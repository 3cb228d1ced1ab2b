"""Problem files: loading, validation and the schema (:mod:`vpinn.problem.spec`)."""

from vpinn.problem.loader import load_problem, parse_problem
from vpinn.problem.spec import ProblemSpec

__all__ = ["ProblemSpec", "load_problem", "parse_problem"]
