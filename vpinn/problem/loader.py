"""Load a problem file: TOML -> validated :class:`~vpinn.problem.spec.ProblemSpec`.

Every mistake becomes one :class:`~vpinn.errors.ProblemFileError` of the form
``file:line: key: reason``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
import sys
import tomllib
import warnings
from pathlib import Path


from vpinn.errors import ProblemFileError, SpecError, VpinnWarning
from vpinn.geometry.mesh import MeshError
from vpinn.geometry.selectors import SelectionError
from vpinn.expressions import BUILTIN_CONSTANTS, FUNCTIONS, VARIABLES
from vpinn.problem import schema
from vpinn.problem.locate import locate
from vpinn.problem.spec import (BOX_RULES, LOAD_CONDITIONS, MAX_BYTES, MAX_RULE_POINTS, MESH_RULES, SHORT_FORM, OutputSpec,
                                ProblemSpec, TrainSpec)

#: the reason given for arrays or tables nested too deeply to read (Python's recursion limit)
NESTING = "arrays or tables are nested too deeply (a problem file needs at most a few levels)"

#: Poisson's ratio above which loading warns about volumetric locking
LOCKING_NU = 0.45
#: a distance function at most this at a point of another face: the two faces meet there
MEETING = 1e-9


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
    except ValueError:  # Python refuses to read an integer of more than 4,300 digits
        raise ProblemFileError(source, f"not valid TOML: an integer of more than {sys.get_int_max_str_digits()} digits") from None
    except RecursionError:
        raise ProblemFileError(source, NESTING) from None
    try:
        for key, value in (overrides or {}).items():
            if key == "train.phase":
                _drop_short_form(data)
            _set_dotted(data, key, copy.deepcopy(value))  # later overrides must not edit the caller's values
        constants = schema.build(dict, data.get("constants", {}), key="constants")
        _check_constant_names(constants)
        spec = with_mesh_file(schema.build(ProblemSpec, data, constants), Path(source).parent)
        check_consistency(spec)
    except SpecError as err:
        raise in_file(err, source, text) from None
    except RecursionError:  # a value nested hundreds deep (in the file or a --set) that TOML still read
        raise ProblemFileError(source, NESTING) from None
    return spec


def in_file(err: SpecError, source: str, text: str) -> ProblemFileError:
    """``err`` located in problem-file ``text`` (named ``source``): ``file:line: key: reason``.

    Also for checks that need the built objects (e.g. the physics), made after loading."""
    return ProblemFileError(source, err.reason, err.key, locate(text, err.key))


def with_mesh_file(spec: ProblemSpec, base: Path) -> ProblemSpec:
    """A mesh domain's ``file`` made absolute (relative to ``base``, the problem file's folder) and
    the mesh read, so that a bad mesh is one error at ``domain.file``."""
    if spec.domain.type != "mesh":
        return spec
    path = Path(spec.domain.file).expanduser()
    domain = dataclasses.replace(spec.domain, file=str(path if path.is_absolute() else (base / path).resolve()))
    try:
        domain.mesh()
    except SelectionError as err:
        raise SpecError(f"domain.select[{err.index}]" + (f".{err.key}" if err.key else ""), err.reason) from None
    except MeshError as err:
        raise SpecError("domain.file", str(err)) from None
    return dataclasses.replace(spec, domain=domain)


def _drop_short_form(data: dict) -> None:
    """An override of the whole schedule (``train.phase``) replaces the file's schedule in either
    form: the short-form keys of the file's ``[train]`` (``steps``, ``lr``, ``[train.lbfgs]``,
    ...) go with it, so that ``run.py compare`` can run any file's settings."""
    train = data.get("train")
    if isinstance(train, dict):
        for name in SHORT_FORM:
            train.pop(name, None)


_KEY_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?")


def _set_dotted(data: dict, key: str, value: object) -> None:
    """Set the dotted ``key`` (``train.steps``, ``bc[0].value``) in the parsed file ``data``.

    Missing tables are created; an index must name an existing entry of an array of tables."""
    parts = key.split(".")
    for depth, part in enumerate(parts):
        match = _KEY_PART.fullmatch(part)
        if match is None:
            raise SpecError(key, "not a key (write names and indices, e.g. train.steps or bc[0].value)")
        name, index = match.group(1), match.group(2)
        last = depth == len(parts) - 1
        if index is None:
            if last:
                data[name] = value
                return
            data = data.setdefault(name, {})
        else:
            entries = data.get(name)
            if not isinstance(entries, list) or int(index) >= len(entries):
                raise SpecError(key, f"the file has no entry {part}")
            if last:
                entries[int(index)] = value
                return
            data = entries[int(index)]
        if not isinstance(data, dict):
            where = ".".join(parts[:depth + 1])
            raise SpecError(key, f"'{where}' is an array: name an entry, e.g. {where}[0]" if isinstance(data, list)
                            else f"'{where}' is not a table")


def _check_constant_names(constants: dict[str, float]) -> None:
    reserved = {*VARIABLES, *BUILTIN_CONSTANTS, *FUNCTIONS}
    for name in constants:
        if name in reserved:
            raise SpecError(f"constants.{name}", f"'{name}' is reserved in expressions")


def check_consistency(spec: ProblemSpec) -> None:
    """Checks that span sections (each raises a :class:`SpecError` naming one key)."""
    _check_exact(spec)
    _warn_locking(spec)
    _check_rules(spec)
    seen: dict[str, int] = {}
    for i, bc in enumerate(spec.bc):
        if bc.type not in spec.pde.conditions:
            raise SpecError(f"bc[{i}].type", f"'{bc.type}' is not a condition of a {spec.pde.type} problem "
                                             f"(choose from {', '.join(spec.pde.conditions)})")
        if bc.value == "auto" and spec.exact is None:
            raise SpecError(f"bc[{i}].value", '"auto" takes the data from [exact] u, which is missing')
        _check_faces(spec, i, bc)
        for face in bc.faces_on(spec.domain):
            if face in seen:
                raise SpecError(f"bc[{i}].on", f"face '{face}' already has a condition in bc[{seen[face]}]")
            seen[face] = i
    _check_roller_lifts(spec)
    _check_roller_angles(spec)
    _check_schedule(spec)
    _check_boundary_rule(spec)
    _check_grid(spec)


def _check_boundary_rule(spec: ProblemSpec) -> None:
    """A Neumann, traction or Nitsche entry's boundary rule (one face rule per face) stays enumerable."""
    per_face = spec.quadrature.boundary.size
    for i, bc in enumerate(spec.bc):
        faces = len(bc.faces_on(spec.domain))
        if (bc.type in LOAD_CONDITIONS or bc.nitsche) and faces * per_face > MAX_RULE_POINTS:
            raise SpecError("quadrature.boundary.cells", f"bc[{i}]'s boundary rule would have {faces * per_face:.3e} points "
                                                         f"({faces} faces); at most 2^62 = {MAX_RULE_POINTS:.3e}")


def grid_bytes(grid: tuple[int, int, int], components: int) -> int:
    """About how much memory exporting ``output.grid`` takes: per node its coordinates and fields
    (at most 8 numbers per solution component: value, exact value, error, gradient or strain
    and stress), per hexahedron 8 node numbers; all 8 bytes each."""
    nodes, cells = math.prod(grid), math.prod(n - 1 for n in grid)
    return 8 * (nodes * (3 + 8 * components) + 8 * cells)


def _check_grid(spec: ProblemSpec) -> None:
    """The export at the end of a run must fit in this machine's memory: refuse it now, not after training."""
    needed, available = grid_bytes(spec.output.grid, spec.pde.components), physical_memory()
    if needed > available:
        shape = " x ".join(map(str, spec.output.grid))
        raise SpecError("output.grid", f"a {shape} grid needs about {_size(needed)} to export, more than this "
                                       f"machine's {_size(available)} of memory; use fewer nodes")


def _size(count: int) -> str:
    """``count`` bytes in binary units, e.g. ``138.3 TiB``."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    power = min(len(units) - 1, max(0, (count.bit_length() - 1) // 10))
    return f"{count / 2**(10 * power):.1f} {units[power]}"


def physical_memory() -> int:
    """This machine's memory in bytes (2^64 where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return MAX_BYTES


def _check_rules(spec: ProblemSpec) -> None:
    """A mesh takes simplex rules, a box or sphere octant Gauss or Sobol rules; a mesh has no
    output grid (its solution is written on the mesh)."""
    allowed = MESH_RULES if spec.domain.type == "mesh" else BOX_RULES
    if spec.domain.type == "mesh" and spec.output.grid != OutputSpec().grid:
        raise SpecError("output.grid", "a mesh domain writes its solution on its own mesh; for a grid, use "
                                       "run.py export CHECKPOINT --grid N")
    for key, rule in spec.quadrature.rules().items():
        if rule.rule not in allowed:
            raise SpecError(f"quadrature.{key}", f"a {spec.domain.type} domain takes rule = "
                                                 f"{' or '.join(map(repr, allowed))}, not {rule.rule!r}")


def _check_schedule(spec: ProblemSpec) -> None:
    """With ``[[train.phase]]`` the short-form schedule keys would be ignored: refuse them."""
    train, defaults = spec.train, TrainSpec()
    if not train.phase:
        return
    for name in SHORT_FORM:
        if getattr(train, name) != getattr(defaults, name):
            hint = ('add a [[train.phase]] with optimizer = "lbfgs" instead' if name == "lbfgs"
                    else f"set it on a phase instead, e.g. train.phase[0].{name}")
            raise SpecError(f"train.{name}", f"is not used when [[train.phase]] gives the schedule; {hint}")


def _warn_locking(spec: ProblemSpec) -> None:
    """A one-line warning for a nearly incompressible material (volumetric locking)."""
    if spec.pde.type == "elasticity" and spec.pde.poisson_ratio > LOCKING_NU:
        warnings.warn(
            f"pde.nu = {spec.pde.poisson_ratio:g} > {LOCKING_NU}: the displacement energy locks as nu -> 0.5 "
            "(lam (div u)^2/2 dominates); expect slow training and poor stresses", VpinnWarning, stacklevel=4)


def _check_roller_lifts(spec: ProblemSpec) -> None:
    """Each exactly imposed clamp entry's component normal to a roller plane must be 0 on it:
    there ``u.n = g.n`` (a clamp of Nitsche's method has no lift)."""
    from vpinn.assemble import build_domain, face_samples, roller_normals, value_data  # assembly imports this package

    normals = roller_normals(spec)
    clamps = [(i, bc) for i, bc in enumerate(spec.bc) if bc.type == "clamp" and bc.exact_value]
    if not normals or not clamps:
        return
    domain = build_domain(spec.domain)
    for index, bc in clamps:
        data = value_data(spec, bc)
        for face, normal in normals.items():
            parts = [(n, data[k]) for k, n in enumerate(normal) if n and not (data[k].is_constant and data[k].constant_value == 0)]
            if not parts:
                continue
            points = face_samples(domain, face)
            largest = float(sum(n * g(points) for n, g in parts).abs().max())
            if largest > 1e-12 * spec.model.output_scale:
                raise SpecError(
                    f"bc[{index}].value",
                    f"the clamp data's component normal to the roller face '{face}' is not 0 there (up to {largest:.3g}); "
                    f"it is extended into the domain as the lift g of u = g + d*N, so write it to vanish on '{face}'",
                )


def _check_roller_angles(spec: ProblemSpec) -> None:
    """An oblique roller may meet another roller only at a right angle: the projection of one must
    leave the other's plane alone (:mod:`vpinn.fields.projection`)."""
    from vpinn.assemble import build_domain, crossing_rollers, face_samples, roller_normals  # assembly imports this package

    normals = roller_normals(spec)
    oblique = [f for f in normals if f in spec.domain.oblique_planes]
    if not oblique:
        return
    domain = build_domain(spec.domain)
    for face in oblique:
        for other in crossing_rollers(normals, face):
            if float(domain.distance((other,))(face_samples(domain, face))[0].min()) <= MEETING:
                cosine = abs(sum(a * b for a, b in zip(normals[face], normals[other])))
                i, bc = next((i, bc) for i, bc in enumerate(spec.bc) if face in bc.faces_on(spec.domain))
                raise SpecError(_face_key(i, bc, face), f"the roller faces '{face}' and '{other}' meet at "
                                                        f"{math.degrees(math.acos(min(1.0, cosine))):.1f} degrees; rollers "
                                                        f"may meet only at right angles (where they meet, the projection of one would disturb the other)")


def _face_key(i: int, bc, face: str) -> str:
    """Where entry ``bc[i]`` names ``face``: ``bc[i].on[j]``, or ``bc[i].on`` for ``"all"``."""
    return f"bc[{i}].on" if "all" in bc.on else f"bc[{i}].on[{bc.on.index(face)}]"


def _check_exact(spec: ProblemSpec) -> None:
    """``"auto"`` keys need ``[exact]``; ``[exact] u`` has as many components as the PDE."""
    for name in spec.pde.derived_keys:
        if getattr(spec.pde, name) == "auto" and spec.exact is None:
            raise SpecError(f"pde.{name}", f'"auto" derives the {name.replace("_", " ")} from [exact] u, which is missing')
    if spec.exact is None:
        return
    wanted = spec.pde.components
    if len(spec.exact.components) != wanted or isinstance(spec.exact.u, tuple) != (wanted > 1):
        shape = "one expression" if wanted == 1 else f"a list of {wanted} expressions [u_x, u_y, u_z]"
        raise SpecError("exact.u", f"a {spec.pde.type} problem needs {shape}")


def _check_faces(spec: ProblemSpec, i: int, bc) -> None:
    """Face names exist on the domain; rollers sit on planes normal to an axis."""
    domain = spec.domain
    if not bc.on:
        raise SpecError(f"bc[{i}].on", 'must name at least one face (or "all")')
    for j, face in enumerate(bc.on):
        if face != "all" and face not in domain.faces:
            raise SpecError(f"bc[{i}].on[{j}]", f"unknown face '{face}' of the {domain.type}{schema.suggest(face, domain.faces)} "
                                                f"(faces: all, {', '.join(domain.faces)})")
    if domain.type == "mesh":
        for face in bc.faces_on(domain):
            if not len(domain.mesh().faces[face]):
                raise SpecError(_face_key(i, bc, face), f"face '{face}' of the mesh {domain.file} has no triangles (an empty part)")
    if bc.type == "roller":
        planar = [*domain.planes, *domain.oblique_planes]
        for face in bc.faces_on(domain):
            if face not in planar:
                raise SpecError(_face_key(i, bc, face), f"a roller needs a planar face, and '{face}' is not one "
                                     f"(planar faces of the {domain.type}: {', '.join(planar) or 'none'})")
