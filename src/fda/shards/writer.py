"""Writing shards: the members' encoders and deterministic tar files that appear under their final name only when
complete (the decoders are in :mod:`fda.shards.reader`).

Members are written with a fixed integer mtime and owner, so the same samples always give the same bytes (a resumed
run equals an uninterrupted one byte for byte) and no PAX header is added per member. A tar is its samples' blocks
one after the other (:func:`pack_sample`, the ustar blocks ``tarfile`` writes) and then the end-of-archive blocks, so
the worker processes of ``fda preprocess`` pack their samples and the process assembling a shard only appends bytes.
"""

import json
import os
import tarfile
from typing import Any, Dict, List, Sequence

import cv2
import numpy as np

from fda.errors import InputError
from fda.shards.schema import CAPTIONS, KEY_RE, META, SCHEMA_VERSION, frame_member, mask_member

PARTIAL = ".partial"


def sample_members(key: str, meta: Dict[str, Any], captions: Sequence[str], frames_jpeg: Sequence[bytes],
                   masks_png: Sequence[bytes]) -> List[tuple]:
    """The ``(member name, bytes)`` pairs of one sample, in a fixed order.

    Args:
        key: the sample key (``^[A-Za-z0-9_-]+$``).
        meta: the sample's meta dict; ``schema_version`` is set here.
        captions: every caption of the video.
        frames_jpeg: encoded frames, one per sampled index.
        masks_png: encoded masks, aligned with ``frames_jpeg``.
    """
    if not KEY_RE.match(key):
        raise InputError(f"sample key {key!r} is not webdataset-safe; use fda.shards.schema.sample_key")
    if len(frames_jpeg) != len(masks_png):
        raise ValueError(f"{len(frames_jpeg)} frames but {len(masks_png)} masks for {key}")
    meta = {"schema_version": SCHEMA_VERSION, **meta}
    members = [(f"{key}.{META}", json.dumps(meta, ensure_ascii=False).encode("utf-8")),
               (f"{key}.{CAPTIONS}", json.dumps(list(captions), ensure_ascii=False).encode("utf-8"))]
    members += [(f"{key}.{frame_member(i)}", data) for i, data in enumerate(frames_jpeg)]
    members += [(f"{key}.{mask_member(i)}", data) for i, data in enumerate(masks_png)]
    return members


def pack_sample(members: Sequence[tuple]) -> bytes:
    """The tar blocks of one sample's ``(member name, bytes)`` pairs: per member a ustar header (mtime 0, mode 0444,
    owner ``fda``) and its bytes padded to the 512-byte block, exactly as :mod:`tarfile` writes them."""
    blocks = []
    for name, data in members:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0
        info.mode = 0o444
        info.uname = info.gname = "fda"
        blocks.append(info.tobuf(tarfile.USTAR_FORMAT, tarfile.ENCODING, "surrogateescape"))
        blocks.append(bytes(data))
        blocks.append(tarfile.NUL * (-len(data) % tarfile.BLOCKSIZE))
    return b"".join(blocks)


def encode_frame(frame: np.ndarray, quality: int) -> bytes:
    """Encode a frame (uint8 [H, W, 3] RGB) as the shard format's JPEG at ``quality`` (1..100)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise InputError("JPEG encoding of a frame failed")
    return buf.tobytes()


def encode_mask(mask: np.ndarray) -> bytes:
    """Encode a binary mask (uint8 [H, W] in {0, 1}) as the shard format's 1-bit PNG (decodes to 0/255)."""
    ok, buf = cv2.imencode(".png", mask.astype(np.uint8) * np.uint8(255), [cv2.IMWRITE_PNG_BILEVEL, 1])
    if not ok:
        raise InputError("PNG encoding of a mask failed")
    return buf.tobytes()


class ShardWriter:
    """Write one tar shard to ``<path>.partial`` and rename it to ``path`` on :meth:`commit`.

    Use as a context manager: leaving the block without ``commit()`` (an exception, a kill) leaves no file under the
    final name; the ``.partial`` file is removed on an exception and ignored by readers otherwise.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.partial = path + PARTIAL
        self.count = 0
        self._size = 0
        self._file = open(self.partial, "wb")

    def write(self, members: Sequence[tuple]) -> None:
        """Append one sample given as ``(member name, bytes)`` pairs (see :func:`sample_members`)."""
        self.write_packed(pack_sample(members))

    def write_packed(self, blocks: bytes) -> None:
        """Append one sample already packed by :func:`pack_sample`."""
        self._file.write(blocks)
        self._size += len(blocks)
        self.count += 1

    def commit(self) -> None:
        """Finish the tar (two zero blocks, then zeros to a whole 10240-byte record, as :mod:`tarfile` closes one),
        flush it to disk and move it to its final name."""
        end = 2 * tarfile.BLOCKSIZE
        end += -(self._size + end) % tarfile.RECORDSIZE
        self._file.write(tarfile.NUL * end)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        """Drop the partial file."""
        if not self._file.closed:
            self._file.close()
        if os.path.exists(self.partial):
            os.remove(self.partial)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._file.closed:
            self.commit()
