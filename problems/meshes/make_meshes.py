"""Regenerate the bundled meshes with gmsh's Python API (``pip install gmsh``; needed only here).

    python problems/meshes/make_meshes.py    # cube.msh, hollow_sphere.msh, thick_cylinder.msh, thick_cylinder_sector.msh

Each mesh has one physical volume and named physical surfaces, which problem files name in
``[[bc]] on = [...]``:

* ``cube.msh``: the unit cube, faces ``xmin xmax ymin ymax zmin zmax`` (mesh size 1/6);
* ``hollow_sphere.msh``: the full hollow sphere 1 <= r <= 2, faces ``inner outer`` (size 0.45);
* ``thick_cylinder.msh``: a quarter of the thick-walled cylinder 1 <= r <= 2, 0 <= z <= 1 with
  x, y >= 0, faces ``inner outer x0 y0 bottom top`` (size 0.2);
* ``thick_cylinder_sector.msh``: the 30-degree sector 0 <= theta <= pi/6 of the same cylinder,
  faces ``inner outer y0 cut bottom top`` (``cut``: the oblique plane theta = pi/6; size 0.2).

The files are written as gmsh 4.1 ASCII, each well under 1 MB.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import gmsh

HERE = Path(__file__).resolve().parent


def _name_surfaces(names) -> None:
    """One physical surface per boundary surface, named by ``names(center of mass)``; one volume."""
    groups: dict[str, list[int]] = {}
    for dim, tag in gmsh.model.getEntities(2):
        groups.setdefault(names(gmsh.model.occ.getCenterOfMass(dim, tag)), []).append(tag)
    for name, tags in sorted(groups.items()):
        gmsh.model.addPhysicalGroup(2, tags, name=name)
    gmsh.model.addPhysicalGroup(3, [tag for _, tag in gmsh.model.getEntities(3)], name="domain")


def _write(name: str, size: float) -> None:
    gmsh.option.setNumber("Mesh.MeshSizeMax", size)
    gmsh.option.setNumber("Mesh.MeshSizeMin", size)
    gmsh.option.setNumber("Mesh.MshFileVersion", 4.1)
    gmsh.model.mesh.generate(3)
    gmsh.model.mesh.optimize("Netgen")
    gmsh.write(str(HERE / name))
    gmsh.model.remove()


def cube() -> None:
    gmsh.model.add("cube")
    gmsh.model.occ.addBox(0, 0, 0, 1, 1, 1)
    gmsh.model.occ.synchronize()

    def names(center):
        axis = max(range(3), key=lambda k: abs(center[k] - 0.5))
        return "xyz"[axis] + ("max" if center[axis] > 0.5 else "min")

    _name_surfaces(names)
    _write("cube.msh", 1 / 6)


def hollow_sphere() -> None:
    gmsh.model.add("hollow_sphere")
    outer, inner = gmsh.model.occ.addSphere(0, 0, 0, 2), gmsh.model.occ.addSphere(0, 0, 0, 1)
    gmsh.model.occ.cut([(3, outer)], [(3, inner)])
    gmsh.model.occ.synchronize()
    radius = {}
    for dim, tag in gmsh.model.getEntities(2):
        box = gmsh.model.getBoundingBox(dim, tag)
        radius[tag] = (box[3] - box[0]) / 2
    groups = {"inner": [t for t, r in radius.items() if r < 1.5], "outer": [t for t, r in radius.items() if r > 1.5]}
    for name, tags in groups.items():
        gmsh.model.addPhysicalGroup(2, tags, name=name)
    gmsh.model.addPhysicalGroup(3, [tag for _, tag in gmsh.model.getEntities(3)], name="domain")
    _write("hollow_sphere.msh", 0.45)


def thick_cylinder() -> None:
    gmsh.model.add("thick_cylinder")
    outer = gmsh.model.occ.addCylinder(0, 0, 0, 0, 0, 1, 2)
    inner = gmsh.model.occ.addCylinder(0, 0, 0, 0, 0, 1, 1)
    ring, _ = gmsh.model.occ.cut([(3, outer)], [(3, inner)])
    quadrant = gmsh.model.occ.addBox(0, 0, 0, 2, 2, 1)
    gmsh.model.occ.intersect(ring, [(3, quadrant)])
    gmsh.model.occ.synchronize()

    def names(center):
        x, y, z = center
        if abs(z) < 1e-9 or abs(z - 1) < 1e-9:
            return "bottom" if z < 0.5 else "top"
        if abs(x) < 1e-9:
            return "x0"
        if abs(y) < 1e-9:
            return "y0"
        return "inner" if math.hypot(x, y) < 1.5 else "outer"

    _name_surfaces(names)
    _write("thick_cylinder.msh", 0.2)


#: the opening of the cylinder's sector (radians): its second cut plane is oblique
SECTOR = math.pi / 6


def thick_cylinder_sector() -> None:
    gmsh.model.add("thick_cylinder_sector")
    outer = gmsh.model.occ.addCylinder(0, 0, 0, 0, 0, 1, 2, angle=SECTOR)
    inner = gmsh.model.occ.addCylinder(0, 0, 0, 0, 0, 1, 1, angle=SECTOR)
    gmsh.model.occ.cut([(3, outer)], [(3, inner)])
    gmsh.model.occ.synchronize()

    def names(center):
        x, y, z = center
        if abs(z) < 1e-9 or abs(z - 1) < 1e-9:
            return "bottom" if z < 0.5 else "top"
        if abs(y) < 1e-9:
            return "y0"
        if abs(y * math.cos(SECTOR) - x * math.sin(SECTOR)) < 1e-9:
            return "cut"
        return "inner" if math.hypot(x, y) < 1.5 else "outer"

    _name_surfaces(names)
    _write("thick_cylinder_sector.msh", 0.2)


def main() -> int:
    gmsh.initialize(sys.argv[:1])
    gmsh.option.setNumber("General.Terminal", 0)
    try:
        cube()
        hollow_sphere()
        thick_cylinder()
        thick_cylinder_sector()
    finally:
        gmsh.finalize()
    return 0


if __name__ == "__main__":
    sys.exit(main())
