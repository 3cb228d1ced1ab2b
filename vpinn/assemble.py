"""Assembly: the one place that reads a validated problem spec and builds the objects of a solve.

``ProblemSpec -> Assembly``: the domain, the network (on the device, in the training dtype),
the trial function (hard-BC ansatz around it), the physics (forms), the loss terms (each form
on its training rule with its batch size) and their samplers (each rank's slice of one
global batch when several ranks share the run), and the evaluation rule;
:func:`build_trainer` adds the optimiser phases.  Below this module every constructor takes
plain values (sizes, expressions, rules, tensors), never a piece of the problem-file schema.
Nothing here reads files or trains.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from vpinn.calculus import flux_divergence
from vpinn.distributed import LOCAL, Group, ShardedSampler
from vpinn.errors import VpinnWarning
from vpinn.evaluate import energy, relative_errors
from vpinn.expressions import Expression
from vpinn.fields.ansatz import HardDirichletAnsatz
from vpinn.fields.jacobian import JACOBIAN_METHODS
from vpinn.fields.network import Field
from vpinn.fields.blending import BlendedLift
from vpinn.fields.projection import RollerProjection, RollerWeight
from vpinn.geometry import Box, Domain, SphereOctant
from vpinn.geometry.maps import ParameterMap
from vpinn.geometry.mesh_domain import MeshDomain
from vpinn.physics import elasticity, poisson
from vpinn.physics.base import Load, Physics, Term, evaluate_vector, is_zero, on_volume_rule
from vpinn.problem.spec import (DEFAULT_BATCH, DEFAULT_STEP_OVERHEAD, NITSCHE_PENALTY, BoundarySpec, DomainSpec, ProblemSpec,
                                RuleSpec, optimizer_options)
from vpinn.quadrature import ConcatRule, GaussRule, MappedRule, QuadratureRule, SimplexMeshRule, SobolRule
from vpinn.sampling import Sampler, make_sampler
from vpinn.train import OPTIMIZERS, Observer, Phase, Trainer, TrainingProblem
from vpinn.train.batching import BatchPlan, fit
from vpinn.train.oom import OutOfMemoryBackoff

DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: |n_i . n_j| at most this: two roller planes are perpendicular
PERPENDICULAR = 1e-9

#: ``[domain] type`` -> the domain object of its spec
DOMAINS: dict[str, Callable[[DomainSpec], Domain]] = {
    "box": lambda spec: Box(spec.lower, spec.upper),
    "sphere_octant": lambda spec: SphereOctant(spec.inner_radius, spec.outer_radius),
    "mesh": lambda spec: MeshDomain(spec.mesh()),
}


@dataclass
class Assembly:
    """A problem ready to train: see the module docstring."""

    device: torch.device
    dtype: torch.dtype
    domain: Domain
    field: Field
    trial: HardDirichletAnsatz
    physics: Physics
    terms: list[Term]
    samplers: list[Sampler]
    evaluation_rule: QuadratureRule
    chunk: int
    group: Group = LOCAL

    def evaluate(self, dtype: torch.dtype) -> dict:
        """The loss functional on the evaluation rule (``energy``) and, with an exact solution,
        the relative errors: the evaluation columns of a history row (summed over the ranks)."""
        result = {"energy": energy(on_volume_rule(self.terms, self.evaluation_rule), self.trial, self.chunk,
                                   self.device, dtype, self.group)}
        if self.physics.exact is not None:
            result.update(relative_errors(self.physics, self.trial, self.evaluation_rule, self.chunk, self.device, dtype,
                                          self.group))
        return result


def build_domain(spec: DomainSpec) -> Domain:
    """The domain object of ``[domain]``."""
    return DOMAINS[spec.type](spec)


def build_rule(spec: RuleSpec, mapping: ParameterMap) -> MappedRule:
    """The rule described by ``spec`` on ``mapping``'s parameter box."""
    if spec.rule == "gauss":
        return GaussRule(mapping, spec.cells, spec.order)
    return SobolRule(mapping, spec.points, spec.seed)


def volume_rule(spec: RuleSpec, domain: Domain) -> QuadratureRule:
    """The rule ``spec`` on the domain's volume: on a mesh its tetrahedra, else the volume map."""
    if spec.rule == "simplex":
        mesh = domain.mesh
        return SimplexMeshRule(mesh.vertices, mesh.tetrahedra, spec.order, spec.refine)
    return build_rule(spec, domain.volume_map())


def face_rule(spec: RuleSpec, domain: Domain, face: str) -> QuadratureRule:
    """The rule ``spec`` on one face: on a mesh its triangles (with outward normals), else the face map."""
    if spec.rule == "simplex":
        mesh = domain.mesh
        return SimplexMeshRule(mesh.vertices, mesh.faces[face], spec.order, spec.refine, mesh.normals(face))
    return build_rule(spec, domain.face_map(face))


def face_samples(domain: Domain, face: str) -> torch.Tensor:
    """Points (n, 3) float64 on a face, for checks of boundary data: 256 random points of its
    map, or the vertices of a mesh face's triangles."""
    if isinstance(domain, MeshDomain):
        return torch.as_tensor(domain.mesh.vertices[domain.mesh.faces[face]].reshape(-1, 3))
    params = torch.rand(256, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    return domain.face_map(face)(params).points


def assemble(spec: ProblemSpec, device: torch.device, group: Group = LOCAL) -> Assembly:
    """Everything a solve needs, with weights initialised from ``train.seed`` (in the first
    phase's dtype), for this rank of ``group`` (every rank builds the same network and
    identically seeded samplers, and keeps its slice of each batch)."""
    domain = build_domain(spec.domain)
    dtype = DTYPES[spec.train.phases[0].dtype]
    field = build_field(spec, domain, dtype).to(device)
    physics = PHYSICS[spec.pde.type](spec, domain)
    train = spec.train.on_device(device.type)
    volume = volume_rule(spec.quadrature.training, domain)
    first = "batch_start" if train.batch == "auto" else "batch"
    rules = [(physics.energy, volume, capped(f"train.{first}", train, first, volume.size))]
    for form in physics.boundary:
        rule = ConcatRule([face_rule(spec.quadrature.boundary, domain, f) for f in form.faces])
        rules.append((form, rule, capped("train.boundary_batch", train, "boundary_batch", rule.size)))
    terms, samplers = [], []
    for k, (form, rule, batch) in enumerate(rules):
        sampler = make_sampler(train.sampling, rule, device, train.seed + 1 + k, strata=train.strata or max(1, batch // 4),
                               allocation=train.allocation, refresh_every=train.refresh_every, mix=train.uniform_mix)
        if group.size > 1:
            sampler = ShardedSampler(sampler, group)
        terms.append(Term(form, rule, fit(batch, sampler)))
        samplers.append(sampler)
    evaluation_rule = volume_rule(spec.quadrature.evaluation, domain)
    return Assembly(device, dtype, domain, field, build_trial(spec, domain, field), physics, terms, samplers,
                    evaluation_rule, spec.train.chunk, group)


def capped(key: str, section: object, name: str, size: int) -> int:
    """The batch ``section.name``, or the ``size`` of its rule if it is larger: a batch beyond
    the rule would only repeat its points, and the sampler's work grows with the batch.  A value
    the file set (not the schema's default, nor the device's default batch) gets a one-line
    note, named ``key``."""
    batch = getattr(section, name)
    if batch <= size:
        return batch
    default = next(f.default for f in dataclasses.fields(section) if f.name == name)
    if batch not in (set(DEFAULT_BATCH.values()) if default is None else {default}):
        warnings.warn(f"{key} = {batch:,} is larger than its rule of {size:,} points: capped to {size:,}", VpinnWarning,
                      stacklevel=3)
    return size


def build_field(spec: ProblemSpec, domain: Domain, dtype: torch.dtype) -> Field:
    """The network of ``[model]`` for the PDE's number of components, on the CPU."""
    model = spec.model
    return Field(spec.pde.components, width=model.width, depth=model.depth, activation=model.activation,
                 lower=domain.lower, upper=domain.upper, generator=torch.Generator().manual_seed(spec.train.seed),
                 coordinates=domain.input_features() if model.domain_coordinates else None,
                 fourier_features=model.fourier_features, fourier_scale=model.fourier_scale,
                 output_scale=model.output_scale, jacobian=JACOBIAN_METHODS[model.derivatives], dtype=dtype)


def build_trainer(spec: ProblemSpec, assembly: Assembly, *, save: Callable[[dict], None] | None = None,
                  max_time: float | None = None, observer: Observer | None = None) -> Trainer:
    """The training loop of ``[train]``: one :class:`~vpinn.train.loop.Phase` per entry of its
    schedule (:attr:`~vpinn.problem.spec.TrainSpec.phases`), each optimiser built from the
    registry with the phase's own options; on CUDA, in a process on its own, each optimiser
    halves its micro-batch or chunk on out-of-memory and goes on (:mod:`vpinn.train.oom`)."""
    train = spec.train
    parameters = list(assembly.field.parameters())
    problem = TrainingProblem(parameters, assembly.trial, assembly.terms, assembly.samplers, train.chunk, assembly.device,
                              assembly.group)
    finish = volume_rule(spec.quadrature.finish, assembly.domain)
    phases, names = [], [p.optimizer for p in train.phases]
    for k, phase in enumerate(train.phases):
        on_rule, options = problem, optimizer_options(phase)
        if getattr(phase, "rule", "training") == "finish":
            on_rule = TrainingProblem(parameters, assembly.trial, on_volume_rule(assembly.terms, finish), [],
                                      train.chunk, assembly.device, assembly.group)
        if getattr(phase, "gram_rule", "training") == "finish":
            options["gram_rule"] = finish
        for key in ("batch", "gradient_points", "gram_points"):  # minibatches of the training rule (0: exact)
            if options.get(key) and not (key == "gram_points" and "gram_rule" in options):
                options[key] = capped(f"train.phase[{k}].{key}", phase, key, problem.terms[0].rule.size)
        minibatch = phase.optimizer == "adam"
        if minibatch:
            options.update(plan=batch_plan(spec, assembly), diagnose_every=train.log_every)
        optimizer = OPTIMIZERS[phase.optimizer](on_rule, dtype=DTYPES[phase.dtype], steps=phase.steps, **options)
        name = phase.optimizer if names.count(phase.optimizer) == 1 else f"{phase.optimizer}{names[:k].count(phase.optimizer) + 1}"
        if assembly.device.type == "cuda" and assembly.group.size == 1:
            optimizer = OutOfMemoryBackoff(optimizer, name)
        phases.append(Phase(name, optimizer, phase.steps, DTYPES[phase.dtype],
                            train.log_every if minibatch else 1,
                            phase.eval_every or (train.eval_every if minibatch else 10), phase.time_share or None))
    return Trainer(phases, assembly.field, {"samplers": assembly.samplers}, assembly.evaluate, save=save,
                   checkpoint_every=train.checkpoint_every, max_time=max_time or train.max_time, observer=observer,
                   group=assembly.group)


def batch_plan(spec: ProblemSpec, assembly: Assembly) -> BatchPlan:
    """The batch sizes of a minibatch phase and their rules (``train.batch``, ``batch_max``,
    ``micro_batch``, ``step_overhead``, ``snr_threshold``, ``lr_scaling``, ``term_allocation``)."""
    train, terms, auto = spec.train, assembly.terms, spec.train.batch == "auto"
    micro = train.micro_batch or (train.chunk if auto else 2**62)  # a fixed batch: at once, unless micro_batch says
    size = terms[0].rule.size
    maximum = capped("train.batch_max", train, "batch_max", size) if train.batch_max else size
    return BatchPlan([t.batch for t in terms], assembly.samplers, maximum=maximum,
                     micro=micro, auto=auto,
                     overhead=train.step_overhead or DEFAULT_STEP_OVERHEAD[assembly.device.type],
                     snr_threshold=train.snr_threshold,
                     lr_scaling=train.lr_scaling, term_allocation=train.term_allocation)


def fingerprint(spec: ProblemSpec) -> dict[str, str]:
    """A digest per part of the problem that gives a checkpoint its meaning (domain and a mesh's
    file contents, PDE and data, boundary conditions, exact solution, training rules, model, the
    schedule's optimisers and dtypes, seed); a resumed run must match every one."""
    quadrature = spec.quadrature
    parts = {
        "[constants]": sorted(spec.constants.items()), "[domain]": _domain_identity(spec.domain), "[pde]": spec.pde,
        "[[bc]]": spec.bc, "[exact]": spec.exact,
        "training rule ([quadrature])": (quadrature.training, quadrature.boundary, quadrature.finish),
        "[model]": spec.model,
        "training schedule (optimisers and dtypes), train.seed or train.sampling":
            (tuple((p.optimizer, p.dtype) for p in spec.train.phases), spec.train.seed,
             spec.train.sampling, spec.train.strata, spec.train.allocation),
    }
    return {name: hashlib.sha256(repr(value).encode()).hexdigest()[:16] for name, value in parts.items()}


def _domain_identity(domain: DomainSpec) -> object:
    """The domain's spec, and for a mesh also its file's contents (a digest): an edited mesh is
    another problem, a moved one is not (its selectors are part of the spec)."""
    if domain.type != "mesh":
        return domain
    with open(domain.file, "rb") as handle:
        return (domain.type, domain.scale, domain.translate, domain.select, hashlib.file_digest(handle, "sha256").hexdigest())


# ---------------------------------------------------------------------------- physics and trial
def _poisson(spec: ProblemSpec, domain: Domain) -> Physics:
    pde, exact = spec.pde, spec.exact.u if spec.exact is not None else None
    source = -flux_divergence(pde.coefficient, exact) if pde.source == "auto" else pde.source
    fluxes = [(f"flux{i}", bc.faces_on(spec.domain),
               poisson.exact_flux(pde.coefficient, exact) if bc.value == "auto" else poisson.given_flux(bc.value))
              for i, bc in enumerate(spec.bc) if bc.type == "neumann"]
    largest_k = lambda faces: max(float(pde.coefficient(face_samples(domain, f)).max()) for f in faces)  # noqa: E731
    return poisson.physics(source, pde.coefficient, fluxes, exact, nitsche_terms(spec, domain, largest_k))


def _elasticity(spec: ProblemSpec, domain: Domain) -> Physics:
    pde, exact = spec.pde, spec.exact.components if spec.exact is not None else None
    lam, mu = pde.lame
    body = elasticity.body_force_expressions(exact, lam, mu) if pde.body_force == "auto" else pde.body_force
    tractions = [(f"traction{i}", bc.faces_on(spec.domain),
                  elasticity.exact_traction(exact, lam, mu) if bc.value == "auto" else elasticity.given_traction(bc.value))
                 for i, bc in enumerate(spec.bc) if bc.type == "traction" and (bc.value == "auto" or not is_zero(bc.value))]
    return elasticity.physics(lam, mu, None if is_zero(body) else body, tractions, exact,
                              nitsche_terms(spec, domain, lambda faces: lam + 2 * mu))


#: pde type -> its physics from the spec and the domain
PHYSICS: dict[str, Callable[[ProblemSpec, Domain], Physics]] = {"poisson": _poisson, "elasticity": _elasticity}


def nitsche_terms(spec: ProblemSpec, domain: Domain, modulus: Callable[[tuple[str, ...]], float]
                  ) -> list[tuple[str, tuple[str, ...], Load, float]]:
    """``(name, faces, data, penalty)`` of each Dirichlet or clamp entry with ``method = "nitsche"``:
    its data as a load (b, m) and its ``penalty``, or :func:`nitsche_penalty` of the largest
    ``modulus(faces)`` on its faces (Poisson: ``k``; elasticity: ``lam + 2 mu``)."""
    terms = []
    for i, bc in enumerate(spec.bc):
        if bc.nitsche:
            faces, values = bc.faces_on(spec.domain), value_data(spec, bc)
            data = lambda batch, values=values: evaluate_vector(values, batch.points)  # noqa: E731
            terms.append((f"nitsche{i}", faces, data, bc.penalty or nitsche_penalty(modulus(faces), domain)))
    return terms


def nitsche_penalty(modulus: float, domain: Domain) -> float:
    """The default Nitsche penalty ``gamma = NITSCHE_PENALTY * modulus / L`` (units of the modulus
    per length), ``L`` the shortest side of the domain's bounding box.

    The energy is coercive for ``gamma > C * modulus`` with ``C`` the trial space's trace
    constant ``||T(v)||^2_Gamma <= C modulus ||v||^2_E`` (:mod:`vpinn.physics.nitsche`), which
    scales as 1/length and grows with the finest feature the trial space holds.  A smooth
    function on the domain's scale has ``C L`` of a few (``sin(pi x) sin(pi y) sin(pi z)`` on the
    unit cube: 4), but a network also holds steep boundary layers, and ENGD finds them: on a
    small Poisson cube (16x2 network, 300 Adam + 150 ENGD steps) a factor of 10 or 30 let the
    energy fall without bound (relative L2 errors 9.4 and 2.0), 100 reached 1.5e-3 and 300
    3.8e-3 (a larger penalty stiffens the problem).  Hence the factor 100."""
    return NITSCHE_PENALTY * modulus / min(u - l for l, u in zip(domain.lower, domain.upper))


def constrained_faces(spec: ProblemSpec) -> list[tuple[str, ...]]:
    """Per solution component, the faces where the ansatz fixes it: Dirichlet or clamped faces
    imposed exactly (not those of Nitsche's method), and roller planes normal to that
    component's axis (oblique rollers: :func:`build_projection`)."""
    value_faces = tuple(f for bc in spec.bc if bc.exact_value for f in bc.faces_on(spec.domain))
    rollers = tuple(f for bc in spec.bc if bc.type == "roller" for f in bc.faces_on(spec.domain))
    return [value_faces + tuple(f for f in rollers if spec.domain.planes.get(f) == axis) for axis in range(spec.pde.components)]


def value_data(spec: ProblemSpec, bc: BoundarySpec) -> tuple[Expression, ...]:
    """The data of one Dirichlet or clamp entry, one expression per component (``"auto"``: [exact])."""
    value = bc.value
    return spec.exact.components if value == "auto" else value if isinstance(value, tuple) else (value,)


def build_lifts(spec: ProblemSpec, domain: Domain) -> list[Expression | BlendedLift | None]:
    """The lift ``g`` of ``u = g + d*N``, per component (None where zero): the entries' common
    expression where they agree, else their data blended by transfinite interpolation with
    the distance functions of the entries' faces (:mod:`vpinn.fields.blending`); entries imposed
    by Nitsche's method have no lift."""
    entries = [(bc.faces_on(spec.domain), value_data(spec, bc)) for bc in spec.bc if bc.exact_value]
    result: list[Expression | BlendedLift | None] = []
    for k in range(spec.pde.components):
        data = [values[k] for _, values in entries]
        if all(g == data[0] for g in data[1:]):
            result.append(None if not data or is_zero([data[0]]) else data[0])
        else:
            result.append(BlendedLift([(domain.distance(faces), values[k]) for faces, values in entries]))
    return result


def roller_normals(spec: ProblemSpec) -> dict[str, tuple[float, float, float]]:
    """Roller face -> unit normal (outward on oblique planes; ``e_axis`` on axis planes)."""
    rollers = [f for bc in spec.bc if bc.type == "roller" for f in bc.faces_on(spec.domain)]
    axes, oblique = spec.domain.planes, spec.domain.oblique_planes
    return {f: oblique[f] if f in oblique else tuple(float(k == axes[f]) for k in range(3)) for f in rollers}


def crossing_rollers(normals: dict[str, tuple[float, float, float]], face: str) -> tuple[str, ...]:
    """The roller faces whose planes are neither perpendicular nor equal to ``face``'s."""
    return tuple(f for f, n in normals.items()
                 if f != face and abs(sum(a * b for a, b in zip(n, normals[face]))) > PERPENDICULAR)


def build_projection(spec: ProblemSpec, domain: Domain) -> RollerProjection | None:
    """The oblique rollers' projection of ``u = g + P(d N)``, or None without them."""
    normals = roller_normals(spec)
    oblique = [f for f in normals if f in spec.domain.oblique_planes]
    if not oblique:
        return None
    weights = [RollerWeight(domain.distance((f,)), domain.distance(crossing) if (crossing := crossing_rollers(normals, f))
                            else None) for f in oblique]
    return RollerProjection([normals[f] for f in oblique], weights)


def build_trial(spec: ProblemSpec, domain: Domain, field: Field) -> HardDirichletAnsatz:
    """``u = g + P(d N)``: ``d_k`` vanishing on the faces that constrain component k, ``P`` the
    projection of the oblique rollers (if any)."""
    distances = [domain.distance(faces) if faces else None for faces in constrained_faces(spec)]
    return HardDirichletAnsatz(field, distances, build_lifts(spec, domain), build_projection(spec, domain))
