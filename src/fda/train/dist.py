"""This process's place in a training run: torchrun's ranks, agreement between them, and stop signals.

Nothing distributed happens at import; with one process every helper here is a no-op.
"""

import logging
import os
import signal
import threading
from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch

from fda.errors import EnvError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dist:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """True on rank 0 (the one that writes files)."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """True when a process group is in use."""
        return self.world_size > 1


def dist_from_env() -> Dist:
    """Read torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (single process when absent)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as err:
        raise EnvError(f"bad torchrun environment ({err}): launch with torchrun or unset RANK/WORLD_SIZE") from None
    return Dist(rank=rank, world_size=max(1, world), local_rank=local)


class StopSignals:
    """While active (a ``with`` block), SIGINT/SIGTERM only ask the run to stop after the current step.

    Handlers are installed only in the main thread of the main interpreter (signal's own rule); elsewhere ``signum``
    stays None. A second signal raises :class:`KeyboardInterrupt` (abort without saving).
    """

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._old: Dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        logger.warning("%s: stopping after this step and saving a checkpoint (send it again to abort without saving)",
                       signal.Signals(signum).name)


def agree(dist: Dist, value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not dist.active:
        return value
    import torch.distributed as tdist

    box = [value]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(dist: Dist) -> None:
    if dist.active:
        import torch.distributed as tdist

        tdist.barrier()


def stop_requested(dist: Dist, stop: StopSignals, device: torch.device) -> int:
    """The signal that asks to stop (0: none), agreed on by every rank so that all stop at the same step."""
    signum = stop.signum or 0
    if not dist.active:
        return signum
    import torch.distributed as tdist

    flag = torch.tensor([signum], dtype=torch.int64, device=device if device.type == "cuda" else "cpu")
    tdist.all_reduce(flag, op=tdist.ReduceOp.MAX)
    return int(flag.item())
