"""Problem files: loading, validation and the schema (:mod:`vpinn.problem.spec`)."""

from vpinn.problem.loader import in_file, load_problem, parse_problem
from vpinn.problem.spec import ProblemSpec

__all__ = ["ProblemSpec", "in_file", "load_problem", "parse_problem"]
