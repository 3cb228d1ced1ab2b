"""Load a problem file: TOML -> validated :class:`~vpinn.problem.spec.ProblemSpec`.

Every mistake becomes one :class:`~vpinn.errors.ProblemFileError` of the form
``file:line: key: reason``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from vpinn.errors import ProblemFileError, SpecError
from vpinn.expressions import BUILTIN_CONSTANTS, FUNCTIONS, VARIABLES
from vpinn.problem import schema
from vpinn.problem.locate import locate
from vpinn.problem.spec import ProblemSpec


def load_problem(path: str | Path, overrides: dict[str, object] | None = None) -> ProblemSpec:
    """Read and validate the problem file at ``path``.

    ``overrides`` maps dotted keys to values applied before validation (benchmarks use it to
    vary ``train.batch`` or ``model.derivatives``); they are validated like the file's own keys.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ProblemFileError(str(path), f"cannot read the problem file ({err.strerror})") from None
    except UnicodeDecodeError:
        raise ProblemFileError(str(path), "the problem file is not UTF-8 text") from None
    return parse_problem(text, str(path), overrides)


def parse_problem(text: str, source: str = "<problem>", overrides: dict[str, object] | None = None) -> ProblemSpec:
    """Validate problem-file ``text``; ``source`` names it in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        where = re.search(r"\(at line (\d+), column \d+\)", str(err))
        reason = f"not valid TOML: {err}"
        raise ProblemFileError(source, reason, line=int(where.group(1)) if where else None) from None
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    try:
        constants = schema.build(dict, data.get("constants", {}), key="constants")
        _check_constant_names(constants)
        spec = schema.build(ProblemSpec, data, constants)
        check_consistency(spec)
    except SpecError as err:
        raise ProblemFileError(source, err.reason, err.key, locate(text, err.key)) from None
    return spec


def _set_dotted(data: dict, key: str, value: object) -> None:
    *tables, last = key.split(".")
    for name in tables:
        data = data.setdefault(name, {})
    data[last] = value


def _check_constant_names(constants: dict[str, float]) -> None:
    reserved = {*VARIABLES, *BUILTIN_CONSTANTS, *FUNCTIONS}
    for name in constants:
        if name in reserved:
            raise SpecError(f"constants.{name}", f"'{name}' is reserved in expressions")


def check_consistency(spec: ProblemSpec) -> None:
    """Checks that span sections (each raises a :class:`SpecError` naming one key)."""
    if spec.pde.source == "auto" and spec.exact is None:
        raise SpecError("pde.source", '"auto" derives the source from [exact] u, which is missing')
    seen: dict[str, int] = {}
    dirichlet_values: list[tuple[int, object]] = []
    for i, bc in enumerate(spec.bc):
        if bc.value == "auto" and spec.exact is None:
            raise SpecError(f"bc[{i}].value", '"auto" takes the data from [exact] u, which is missing')
        for face in bc.faces:
            if face in seen:
                raise SpecError(f"bc[{i}].on", f"face '{face}' already has a condition in bc[{seen[face]}]")
            seen[face] = i
        if bc.type == "dirichlet":
            dirichlet_values.append((i, bc.value))
    for i, value in dirichlet_values[1:]:
        if value != dirichlet_values[0][1]:
            raise SpecError(
                f"bc[{i}].value",
                "all Dirichlet faces must share one expression for u (it is extended into the "
                f"domain as g in u = g + d*N); bc[{dirichlet_values[0][0]}] has a different one",
            )
