"""Where a model runs: the one ``--device`` resolver of every command (train, eval, embed, search, the lab).

``auto`` picks the best device present, in the order CUDA (this process's GPU under ``torchrun``), Apple MPS, CPU;
an explicit name must exist here. The same string therefore means the same device whichever command reads it.
"""

from typing import Optional

import torch

from fda.errors import ConfigError, EnvError

AUTO = "auto"


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and bool(mps.is_available())


def resolve_device(name: Optional[str] = AUTO, local_rank: int = 0) -> torch.device:
    """The ``torch.device`` a ``--device`` value names.

    Args:
        name: ``auto`` (or None), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        local_rank: this process's rank on its node (``torchrun``'s ``LOCAL_RANK``); ``auto`` and a bare ``cuda``
            take GPU ``local_rank`` modulo the GPUs present, so each process of a run gets its own.

    Returns:
        ``auto``: CUDA when available, else MPS when available, else CPU; otherwise the named device.

    Raises:
        EnvError: a CUDA or MPS device that is not available (``cuda:N`` beyond the GPUs present included).
        ConfigError: a name torch does not know.
    """
    if name is None or name == AUTO:
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {name!r} is not a device: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise EnvError(f"--device {name}: no CUDA device is available; use --device cpu or auto")
        count = torch.cuda.device_count()
        if device.index is None:
            return torch.device("cuda", local_rank % count)
        if device.index >= count:
            raise EnvError(f"--device {name}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1}); "
                           f"use one of them, or --device auto")
    elif device.type == "mps" and not _mps_available():
        raise EnvError(f"--device {name}: MPS is not available; use --device cpu or auto")
    return device
