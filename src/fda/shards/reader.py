"""Reading shard samples back: tar -> raw samples (webdataset's own grouping) -> numpy.

Every stage reads tars through :func:`iter_samples`, with the error policy it needs as a webdataset ``handler``
(training skips a broken shard with a warning, eval and the viewers stop on it), and decodes members with
:func:`decode_sample`, the only decoder of the shard format's members (the encoders are in
:mod:`fda.shards.writer`). Normalisation for the model lives in ``fda.model.transforms``; this module yields uint8
arrays. Images are decoded with OpenCV (the codec preprocess wrote them with): about 25 % faster per sample than
Pillow, same pixels.
"""

import json
from typing import Any, Callable, Dict, Iterable, Iterator, List

import cv2
import numpy as np
from webdataset.handlers import reraise_exception
from webdataset.tariterators import base_plus_ext, group_by_keys, tar_file_expander

from fda.errors import InputError
from fda.shards.location import open_url
from fda.shards.schema import CAPTIONS, META, SCHEMA_VERSION, frame_member, mask_member

Handler = Callable[[Exception], bool]  # webdataset's error policy: True to go on, False to stop; or raise


def _image(data: bytes, flags: int, key: str, member: str) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if img is None:
        raise InputError(f"sample {key}: member {member} is not a readable image")
    return img


def decode_sample(sample: Dict[str, Any]) -> Dict[str, Any]:
    """Decode one raw webdataset sample (member suffix -> bytes) into arrays.

    Args:
        sample: a dict as :func:`iter_samples` (or ``webdataset.tarfile_to_samples``) yields it (``__key__``,
            ``json``, ``f00.jpg``, ...).

    Returns:
        ``{"key", "meta", "captions", "frames": uint8 [T, H, W, 3] RGB, "masks": uint8 [T, H, W] in {0, 255}}``.

    Raises:
        InputError: the sample was written with another schema version or misses a member.
    """
    key = sample.get("__key__", "?")
    try:
        meta = json.loads(sample[META])
        captions: List[str] = json.loads(sample[CAPTIONS])
    except KeyError as err:
        raise InputError(f"sample {key} has no {err.args[0]} member: not an fda shard") from None
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise InputError(f"sample {key} has shard schema_version {version}, this fda reads {SCHEMA_VERSION}: "
                         f"rerun fda preprocess with this version")
    num = len(meta["indices"])
    try:
        frames = np.stack([_image(sample[frame_member(i)], cv2.IMREAD_COLOR_RGB, key, frame_member(i))
                           for i in range(num)])
        # 1-bit PNG masks decode to 0/255 directly.
        masks = np.stack([_image(sample[mask_member(i)], cv2.IMREAD_GRAYSCALE, key, mask_member(i))
                          for i in range(num)])
    except KeyError as err:
        raise InputError(f"sample {key} misses member {err.args[0]}") from None
    return {"key": key, "meta": meta, "captions": captions, "frames": frames, "masks": masks}


def _is_meta(name: str) -> bool:
    return base_plus_ext(name)[1] == META  # webdataset's own split: the key up to the first dot, then the suffix


def _open_streams(urls: Iterable[str], handler: Handler) -> Iterator[Dict[str, Any]]:
    """webdataset's ``url_opener`` with fda's opener (:func:`fda.shards.location.open_url`: local files, ``pipe:``,
    fsspec URLs with retries); a shard that cannot be opened goes to ``handler`` with its URL as the last argument.
    Each stream is closed once its tar has been read (or abandoned)."""
    for url in urls:
        try:
            stream = open_url(url)
        except Exception as exn:  # noqa: BLE001 - the handler decides, as webdataset's url_opener does
            exn.args = exn.args + (url,)
            if handler(exn):
                continue
            break
        try:
            yield {"url": url, "stream": stream}
        finally:
            try:
                stream.close()
            except Exception:  # noqa: BLE001 - a pipe: command's failure was already seen by the tar reader
                pass


def iter_samples(urls: Iterable[str], *, handler: Handler = reraise_exception, meta_only: bool = False,
                 decode: bool = False) -> Iterator[Dict[str, Any]]:
    """The samples of the tars ``urls``, in the order written, grouped by webdataset itself.

    Args:
        urls: tar paths (or any URL webdataset opens), read one after the other.
        handler: what a broken tar, member or sample does (webdataset's policy): ``reraise_exception`` stops with
            the error, ``warn_and_continue`` (or the training stream's ``ShardWarnings``) skips it,
            :func:`unreadable_shard` stops with a one-line :class:`~fda.errors.InputError`.
        meta_only: keep only each sample's ``json`` member (no image bytes are kept, none are decoded).
        decode: yield :func:`decode_sample` dicts instead of raw samples; a sample that does not decode goes to
            ``handler`` like a broken tar.

    Yields:
        Raw samples ``{"__key__", "__url__", suffix: bytes, ...}`` (key = member name up to its first dot), or
        decoded samples with ``decode``.
    """
    streams = _open_streams(urls, handler)
    files = tar_file_expander(streams, handler=handler, select_files=_is_meta if meta_only else None)
    raws = group_by_keys(files, handler=handler)
    if not decode:
        yield from raws
        return
    for raw in raws:
        try:
            sample = decode_sample(raw)
        except Exception as exn:  # noqa: BLE001 - the handler decides, as webdataset's own stages do
            if handler(exn):
                continue
            break
        yield sample


def shard_of(exn: BaseException) -> str:
    """The shard webdataset names in the arguments of an error it passes to a handler (``"?"`` if none)."""
    named = (a for a in reversed(exn.args) if isinstance(a, str) and (a.endswith(".tar") or a.startswith("pipe:")))
    return next(named, "?")


def one_line(exn: BaseException) -> str:
    """``Type: first line of the message`` (webdataset appends `` @ <stream>`` and more arguments: dropped)."""
    first = str(exn.args[0]) if exn.args else str(exn)
    return f"{type(exn).__name__}: {first.split(' @ <')[0]}".splitlines()[0][:300]


class _Unreadable(InputError):
    """A broken shard on its way up to the webdataset stage that names it (an inner stage knows only the stream)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"a shard is corrupt or unreadable ({reason}): rerun fda preprocess")
        self.reason = reason


def unreadable_shard(exn: Exception) -> bool:
    """Handler that stops on a broken shard with one line naming it: the viewers' policy.

    Raises:
        InputError: always; an fda error (a sample that does not decode) keeps its own message.
    """
    if isinstance(exn, InputError) and not isinstance(exn, _Unreadable):
        raise exn
    reason = exn.reason if isinstance(exn, _Unreadable) else one_line(exn)
    url = shard_of(exn)
    if url == "?":
        raise _Unreadable(reason) from None
    raise InputError(f"shard {url} is corrupt or unreadable ({reason}): rerun fda preprocess") from None
