"""Output folders: the one helper that makes them, with the usage and environment errors of :mod:`fda.errors`."""

import os

from fda.errors import ConfigError, path_error


def make_out_dir(path: str, option: str = "--out") -> str:
    """Create the output folder ``path`` (and its parents) if needed; return it.

    Raises:
        ConfigError: ``path`` (or a part of it) is a file, or cannot be a folder there (exit 2).
        EnvError: the machine refuses: no permission, a read-only or full file system (exit 4).
    """
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ConfigError(f"{option} {path!r} is a file, not a folder: choose another {option} (or move the file)")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise path_error(option, path, err, f"choose another {option} in a folder you can write to") from None
    return path
