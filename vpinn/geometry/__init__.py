"""Domains: parameter maps for quadrature (box, sphere octant), tetrahedral meshes, boundary parts,
distance functions for hard BCs."""

from vpinn.geometry.base import DistanceFunction, Domain, InputFeatures, Profile
from vpinn.geometry.box import FACE_AXES, Box, BoxDistance
from vpinn.geometry.maps import BoxFaceMap, BoxVolumeMap, MappedPoints, ParameterMap
from vpinn.geometry.mesh import Mesh, MeshError, read_mesh
from vpinn.geometry.mesh_domain import MeshDomain
from vpinn.geometry.sphere import RadialCoordinate, SphereOctant, SphereOctantDistance

__all__ = [
    "FACE_AXES", "Box", "BoxDistance", "BoxFaceMap", "BoxVolumeMap", "DistanceFunction", "Domain", "InputFeatures", "MappedPoints",
    "Mesh", "MeshDomain", "MeshError", "ParameterMap", "Profile", "RadialCoordinate", "SphereOctant", "SphereOctantDistance", "read_mesh",
]
