"""Error types and their stable exit codes.

The library raises these; only ``fda.cli`` turns them into ``Error: <message>`` and an exit code.
Exit codes: 0 ok, 1 bug (traceback), 2 usage/config, 3 input/data, 4 environment, 128 + N stopped by signal N.
"""

import errno
import os


class FdaError(Exception):
    """Base class of every error the user can act on; ``exit_code`` is stable."""

    exit_code = 1


class ConfigError(FdaError):
    """A bad option value or an inconsistent configuration (exit code 2)."""

    exit_code = 2


class InputError(FdaError):
    """Bad or missing input data: no videos, no shards, an empty split, too many failures (exit code 3)."""

    exit_code = 3


class EnvError(FdaError):
    """The environment lacks something: no ffmpeg, no CUDA, no weights offline (exit code 4)."""

    exit_code = 4


# errno values that say "this machine will not let you" rather than "this path is wrong"
_ENVIRONMENT_ERRNOS = frozenset({errno.EPERM, errno.EACCES, errno.ENOSPC, errno.EROFS, errno.EDQUOT})


def path_error(option: str, path: str, err: OSError, fix: str) -> FdaError:
    """A one-line error for an ``OSError`` raised on a path the user gave with ``option``.

    Args:
        option: the option that named the path (``--out``, ``--log-file``).
        path: the path as given.
        err: what the operating system said.
        fix: what to do instead, e.g. ``"choose a folder you can write to"``.

    Returns:
        :class:`EnvError` (exit 4) when the machine refuses (permissions, read-only or full disk), else
        :class:`ConfigError` (exit 2): the path itself is wrong (a missing parent folder, a file where a folder is
        needed).
    """
    reason = err.strerror or str(err)
    parent = os.path.dirname(os.path.abspath(path))
    if err.errno == errno.ENOENT and not os.path.isdir(parent):
        reason = f"folder {parent} does not exist"
    cls = EnvError if err.errno in _ENVIRONMENT_ERRNOS else ConfigError
    return cls(f"{option} {path!r}: {reason}: {fix}")


class Interrupted(FdaError):
    """SIGINT or SIGTERM stopped a run; exit code 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM)."""

    exit_code = 130

    def __init__(self, message: str, signum: int = 2) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
