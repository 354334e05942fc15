"""Where a shard set lives: a local folder, a URL of a folder, or a brace pattern of tar names; and one opener for
every file of it.

A *location* is what the user passes as SHARDS_DIR (``fda train``, ``fda eval --shards``, ``fda embed --shards``,
``fda visualize``, ``fda masks-stats``)::

    shards/                                        a local folder
    http://host:8000/set/   s3://bucket/set/       a URL of a folder: any fsspec protocol (https, s3, gs, hf, file)
    http://host/set/train-{000000..000003}.tar     a brace pattern of tar names, as webdataset users write them
    'pipe:curl -s -f http://host/set/train-{000000..000001}.tar'   any pipe: command webdataset opens

Every file of the set (``manifest.json``, ``config.json``, the tars) is a *member*, reached by putting its name
where the folder or the tar name stands, and read through :func:`open_member` / :func:`read_member`: a plain
``open`` for a local file, webdataset's ``gopen`` for ``pipe:``, fsspec for a URL (the ecosystem's opener for
``s3://``, ``gs://``, ``hf://``; an HTTP URL is streamed, never downloaded whole). A tar pattern selects shards: a
split keeps the manifest's shards whose names the pattern lists.

A remote read that breaks mid-file (a dropped connection, a timeout) is retried from where it stopped
(:class:`RetryingReader`, ``FDA_READ_RETRIES`` attempts, waits from ``FDA_READ_RETRY_WAIT`` seconds doubling); what
still fails goes to the reader's error policy: training skips the rest of the shard with a warning, eval stops.
"""

import io
import logging
import os
import re
import time
from dataclasses import dataclass
from typing import IO, Any, Callable, Optional, Tuple

from fda.errors import EnvError, InputError

logger = logging.getLogger(__name__)

PIPE = "pipe:"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_TAR_TOKEN = re.compile(r"[^/\s'\"]*\.tar(?=$|[\s'\"])")  # the tar name in a URL or pipe command
_SLOT = "\x00"  # where a member's name goes in a location's template
RETRIES_ENV, WAIT_ENV = "FDA_READ_RETRIES", "FDA_READ_RETRY_WAIT"
DEFAULT_RETRIES, DEFAULT_WAIT = 3, 1.0


def is_url(location: str) -> bool:
    """Whether ``location`` is a URL (``scheme://...``) or a ``pipe:`` command rather than a local path."""
    return location.startswith(PIPE) or bool(_SCHEME.match(location))


def recorded(location: str) -> str:
    """How a run records a location: a local folder as an absolute path, anything else exactly as given."""
    return location if is_url(location) else os.path.abspath(location)


def exists(location: str) -> bool:
    """Whether a recorded location can still be used: a local folder exists; a URL is taken as it is."""
    return is_url(location) or os.path.isdir(location)


def _braces(pattern: str) -> Tuple[str, ...]:
    import braceexpand  # webdataset's own dependency: the patterns mean what they mean to webdataset

    return tuple(braceexpand.braceexpand(pattern))


@dataclass(frozen=True)
class Location:
    """A parsed shard set location (module docstring).

    Attributes:
        given: the location as the user wrote it (messages and run records use it).
        template: the location with ``_SLOT`` where a member's name goes.
        tars: the tar names a pattern selects, or ``None`` for a folder (every shard of the manifest).
    """

    given: str
    template: str
    tars: Optional[Tuple[str, ...]]

    @classmethod
    def parse(cls, location: str) -> "Location":
        """Parse a location.

        Raises:
            InputError: an empty location, or a ``pipe:`` command that names no tar (``...{000000..000009}.tar``).
        """
        if not location:
            raise InputError("empty shard set location: pass a folder written by fda preprocess or its URL")
        tokens = list(_TAR_TOKEN.finditer(location))
        if tokens:
            token = tokens[-1]
            names = _braces(token.group(0))
            return cls(location, location[:token.start()] + _SLOT + location[token.end():], names)
        if location.startswith(PIPE):
            raise InputError(f"shard set location {location!r} is a pipe: command that names no .tar: write the "
                             "tar names into it as a brace pattern, e.g. "
                             "'pipe:curl -s -f URL/train-{000000..000009}.tar'")
        if is_url(location):
            return cls(location, location.rstrip("/") + "/" + _SLOT, None)
        return cls(location, os.path.join(location, _SLOT), None)

    @property
    def remote(self) -> bool:
        """Whether members are read through a URL or a command (not a local file)."""
        return is_url(self.given)

    def member(self, name: str) -> str:
        """The path or URL of the member file ``name`` (``manifest.json``, ``train-000000.tar``)."""
        return self.template.replace(_SLOT, name)

    def selects(self, name: str) -> bool:
        """Whether the shard ``name`` is part of this location (every shard, unless a pattern lists names)."""
        return self.tars is None or name in self.tars


# ---------------------------------------------------------------------------------------------------------------
# Opening members

def _retry_policy() -> Tuple[int, float]:
    try:
        retries = max(0, int(os.environ.get(RETRIES_ENV, DEFAULT_RETRIES)))
        wait = max(0.0, float(os.environ.get(WAIT_ENV, DEFAULT_WAIT)))
    except ValueError:
        raise InputError(f"{RETRIES_ENV} must be an integer and {WAIT_ENV} a number of seconds, got "
                         f"{os.environ.get(RETRIES_ENV)!r} and {os.environ.get(WAIT_ENV)!r}") from None
    return retries, wait


def _open_once(url: str) -> IO[bytes]:
    """One attempt at opening ``url`` for reading, streamed from its start."""
    if url.startswith(PIPE):
        from webdataset.gopen import gopen

        return gopen(url, "rb")
    if not is_url(url):
        return open(url, "rb")
    import fsspec

    # block_size=0: HTTP is streamed with one GET (no range requests, which simple servers lack)
    options = {"block_size": 0} if url.startswith(("http://", "https://")) else {}
    return fsspec.open(url, "rb", **options).open()


class RetryingReader(io.RawIOBase):
    """A read-only stream of a remote file that survives a broken connection: on a read error it reopens the file,
    skips what was already read, and goes on; after ``retries`` failed attempts at the same position the error is
    raised (a retry that gets further before breaking again starts a new count there).

    A missing file (``FileNotFoundError``: a 404), a refusal, a missing fsspec backend or an unknown protocol is not
    retried.
    """

    def __init__(self, url: str, opener: Callable[[str], IO[bytes]] = _open_once, retries: int = DEFAULT_RETRIES,
                 wait: float = DEFAULT_WAIT) -> None:
        super().__init__()
        self.url, self.opener, self.retries, self.wait = url, opener, retries, wait
        self.pos = 0
        self._file: Optional[IO[bytes]] = self._attempt(self._reopen)

    def _reopen(self) -> IO[bytes]:
        stream = self.opener(self.url)
        left = self.pos
        if left:
            try:
                stream.seek(left)  # object stores seek (a ranged GET); a streamed HTTP body cannot
                return stream
            except (OSError, ValueError):
                pass
        while left > 0:  # a stream that cannot seek: read past what was already delivered
            chunk = stream.read(min(left, 1 << 20))
            if not chunk:
                raise OSError(f"{self.url} ended after {self.pos - left} bytes on a retry, {self.pos} were read before")
            left -= len(chunk)
        return stream

    def _attempt(self, action: Callable[[], Any]) -> Any:
        for attempt in range(self.retries + 1):
            try:
                return action()
            except (FileNotFoundError, PermissionError, ImportError, ValueError):
                raise  # retrying cannot help: a 404, a refusal, a missing fsspec backend, an unknown protocol
            except Exception as exn:  # noqa: BLE001 - network errors come in many types (aiohttp, botocore, OS)
                if attempt == self.retries:
                    raise OSError(f"reading {self.url} failed after {self.retries} retries "
                                  f"({type(exn).__name__}: {str(exn).splitlines()[0][:200] if str(exn) else ''})"
                                  ) from None
                delay = self.wait * (2 ** attempt)
                logger.warning("reading %s broke at byte %d (%s: %s); retrying in %.1f s", self.url, self.pos,
                               type(exn).__name__, str(exn)[:120], delay)
                self._close_file()
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _close_file(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except Exception:  # noqa: BLE001 - a broken connection may refuse a clean close
                pass

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        def read() -> bytes:
            if self._file is None:
                self._file = self._reopen()
            return self._file.read(len(buffer))

        data = self._attempt(read)
        buffer[:len(data)] = data
        self.pos += len(data)
        return len(data)

    def close(self) -> None:
        self._close_file()
        super().close()


def open_url(url: str) -> IO[bytes]:
    """Open one file of a shard set for streaming reads: local files directly, remote ones with retries.

    Raises:
        FileNotFoundError: the file (or URL) does not exist.
        OSError: the remote read failed on every attempt.
    """
    if not is_url(url):
        return open(url, "rb")
    if url.startswith(PIPE):
        return _open_once(url)  # a command cannot be resumed mid-stream: its exit status reports failures
    retries, wait = _retry_policy()
    return io.BufferedReader(RetryingReader(url, retries=retries, wait=wait), buffer_size=1 << 20)


def read_member(location: str, name: str) -> Optional[bytes]:
    """The bytes of member ``name`` of ``location``, or ``None`` when it does not exist.

    Raises:
        InputError: the member exists but cannot be read (one line naming it).
        EnvError: no fsspec backend for the URL's protocol.
    """
    url = Location.parse(location).member(name)
    if not is_url(url) and not os.path.isfile(url):
        return None
    try:
        with open_url(url) as f:
            return f.read()
    except FileNotFoundError:
        return None
    except ImportError as err:
        raise EnvError(f"cannot read {url}: {err}: install the fsspec backend for its protocol (s3: pip install "
                       f"'fda[s3]')") from None
    except Exception as err:  # noqa: BLE001 - any failure to fetch is one line naming the URL
        reason = " ".join(str(err).split())[:200]
        raise InputError(f"cannot read {url} ({type(err).__name__}: {reason}): check the location and that its "
                         "server is up") from None
