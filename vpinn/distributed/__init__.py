"""Data-parallel training under ``torchrun``: process groups, sharded estimates, compression.

:mod:`.launch` joins the group ``torchrun`` describes (gloo on CPU, nccl on CUDA);
:mod:`.group` holds the rank, the world size and the collectives (sums, maxima, agreed stop
decisions; the identity for a process on its own); :mod:`.sharding` splits minibatches and
full-rule sums among the ranks; :mod:`.compression` and :mod:`.dither` compress the all-reduce
of minibatch gradients; :mod:`.compensate` sizes the batch for the dither's added variance.
"""

from vpinn.distributed.compression import COMPRESSIONS
from vpinn.distributed.group import LOCAL, Group, ProcessGroup
from vpinn.distributed.launch import finish, rank_device, start, world_size
from vpinn.distributed.sharding import ShardedSampler, shared_chunks, shared_total

__all__ = ["COMPRESSIONS", "LOCAL", "Group", "ProcessGroup", "ShardedSampler", "finish", "rank_device", "shared_chunks",
           "shared_total", "start", "world_size"]
