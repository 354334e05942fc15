"""Error types and their stable exit codes.

The library raises these; only ``fda.cli`` turns them into ``Error: <message>`` and an exit code.
Exit codes: 0 ok, 1 bug (traceback), 2 usage/config, 3 input/data, 4 environment, 128 + N stopped by signal N.
"""


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


class Interrupted(FdaError):
    """SIGINT or SIGTERM stopped a run; exit code 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM)."""

    exit_code = 130

    def __init__(self, message: str, signum: int = 2) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
