"""Checkpoints: the whole training state in one file, written atomically.

A checkpoint holds the network weights and the training dtype, the optimiser and sampler states,
the step counters, the training history, the elapsed training time and the problem's
fingerprint, so that a resumed run continues exactly where the run stopped (same batches, same
optimiser moments) and a checkpoint of another problem is refused.  Everything is read onto the
CPU and holds no device-specific state, so a checkpoint written on CUDA resumes on the CPU and
vice versa.
"""

from __future__ import annotations

import io
import pickle
import warnings
from pathlib import Path

import torch

from vpinn.atomic import atomic_path
from vpinn.errors import VpinnError

FORMAT = 2


class CheckpointError(VpinnError):
    """A checkpoint is missing, unreadable, of another format or of another problem."""


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (the previous checkpoint survives a failed write).

    The state is serialised in memory first and written as plain bytes, so that a full disk is
    an ``OSError`` naming the path (torch's own writer turns it into a bare RuntimeError)."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    with atomic_path(path) as temporary:
        temporary.write_bytes(buffer.getbuffer())


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (onto the CPU)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles in several lines before refusing them
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's message would suggest weights_only=False: never do that here
        raise CheckpointError(f"{path} holds Python objects other than tensors and plain data; "
                              "it is not a vpinn checkpoint and is not unpickled") from None
    except OSError as err:
        raise CheckpointError(f"{path} cannot be read ({err.strerror or err})") from None
    except Exception as err:  # a truncated or foreign file: say which, without a traceback
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(err).__name__}: {first})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a vpinn checkpoint of format {FORMAT}")
    return state


def check_fingerprint(state: dict, fingerprint: dict[str, str], path: str | Path) -> None:
    """Refuse a checkpoint whose problem differs from this one, naming the first section that does."""
    saved = state.get("fingerprint")
    saved = saved if isinstance(saved, dict) else {}
    for section, digest in fingerprint.items():
        if saved.get(section) != digest:
            raise CheckpointError(f"{path} was written for a problem with a different {section}; "
                                  f"resume it with the problem file it was trained with")
