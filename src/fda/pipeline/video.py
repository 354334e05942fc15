"""The only place that opens videos: probing, counting frames exactly, decoding the needed frames upright.

One decoder, in-process through PyAV (FFmpeg's libraries):

- **Exact frame numbers.** :func:`probe` demuxes the video stream without decoding and keeps every packet's
  presentation timestamp; frame ``i`` is the packet whose timestamp ranks ``i`` (presentation order). Container
  metadata is not trusted for the count. Where timestamps cannot be trusted (AVI with reordered frames, missing or
  repeated timestamps) frames are numbered in the decoder's output order instead, which is presentation order too.
- **Only what is needed is decoded.** Packets of frames that are neither needed nor referenced are dropped by the
  codec itself (``skip_frame = NONREF``: a non-reference frame cannot change any other frame); the needed ones are
  decoded in full (``DEFAULT``). Runs of packets after the last needed frame of a group of pictures and before the
  keyframe that starts the next needed run are not sent to the decoder at all (the decoder is drained and reset at
  the gap, as a seek would). The needed frames are byte-identical to a full decode (tested on H.264, HEVC, VP9,
  MPEG-4 part 2 and MPEG-2 in MP4, MKV, WebM, AVI and MPEG-PS); if anything looks wrong (a decode error, a
  missing frame, a timestamp out of order) the clip is decoded again in full.
- **Upright and undistorted.** The display matrix (90/180/270 degree rotations and flips) is applied, the sample
  aspect ratio is applied before the short-side resize and centre crop (frames get the display shape), frames
  flagged interlaced go through ``yadif`` (with their neighbours decoded, so the result equals a yadif pass over
  the whole clip), and any pixel format is converted to RGB by libswscale.
- **Damage is found where it lands** (docs/DAMAGE.md). :func:`probe` measures the video stream against its own
  length (declared frame count, own duration, Matroska's per-track ``DURATION`` tag; never an audio track's),
  finds holes in the timestamps of a damaged file (frames after a hole keep the numbers an undamaged copy gives
  them), checks Matroska's CRC-32 elements and keeps what the demuxer complained about. A full decode runs with
  ``err_detect=explode`` and counts decode errors and corrupt frames, and taints the frames decoded from a damaged
  picture up to the next clean restart (:func:`taint`); the caller decides what a clip may lose (:class:`Decoded`
  lists it).

Failures are values: :class:`VideoError` carries a one-line reason that the caller records.
"""

import bisect
import dataclasses
import itertools
import logging
import os
import re
import shutil
import struct
import subprocess
from collections.abc import MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple, Union

import cv2
import numpy as np

from fda.errors import EnvError
from fda.pipeline.sampling import frames_before, needed_frames, partner_indices, sample_frame_indices

log = logging.getLogger(__name__)

DECODER = "pyav"


class VideoError(Exception):
    """A video that cannot be used; ``str(err)`` is a one-line reason for the manifest."""


def find_ffmpeg() -> str:
    """Path of the ffmpeg binary: ``$FDA_FFMPEG``, then ``ffmpeg`` on PATH, then the imageio-ffmpeg wheel's binary.

    The binary is not used for decoding; tests, benchmarks and the synthetic data generator encode with it.

    Raises:
        EnvError: no ffmpeg binary can be found.
    """
    env = os.environ.get("FDA_FFMPEG")
    if env:
        if os.path.isfile(env) and os.access(env, os.X_OK):
            return env
        raise EnvError(f"FDA_FFMPEG={env!r} is not an executable file: fix the path or unset FDA_FFMPEG")
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # noqa: BLE001 - any failure means "not available"
        raise EnvError("no ffmpeg binary found: run scripts/bootstrap.sh (installs imageio-ffmpeg), "
                       "install ffmpeg, or set FDA_FFMPEG=/path/to/ffmpeg") from None


def ffmpeg_version(exe: str) -> str:
    """First line of ``ffmpeg -version`` (recorded in the manifest)."""
    try:
        out = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as err:
        raise EnvError(f"cannot run ffmpeg at {exe}: {err}") from None
    lines = out.stdout.strip().splitlines()
    return lines[0] if lines else "unknown"


def check_decoder(decoder: str = DECODER) -> str:
    """Check once, up front, that ``decoder`` can run here; returns a version string for the manifest.

    Raises:
        EnvError: PyAV is missing or cannot load its FFmpeg libraries.
    """
    try:
        import av
    except Exception as err:  # noqa: BLE001 - ImportError or a broken shared library
        raise EnvError(f"PyAV cannot be imported ({err}): pip install av") from None
    lib = av.library_versions.get("libavcodec", ())
    return f"PyAV {av.__version__} (libavcodec {'.'.join(str(v) for v in lib)})"


@dataclass(frozen=True)
class VideoInfo:
    """What the container says, plus what demuxing every video packet found.

    ``pts`` holds each non-empty packet's presentation timestamp in decode order, or is empty when the
    timestamps cannot number the frames (then frames are numbered in decoder output order). ``keyframes`` are
    decode positions of keyframe packets. ``present`` is the fraction of the declared frames (or, when the
    container declares no count, of the video stream's own duration) that the file actually holds: below 1 for a
    truncated file. ``holes`` lists ``(rank, frames)``: ``frames`` are missing just before the frame of
    presentation rank ``rank`` (a timestamp gap, see :func:`timestamp_holes`); ``tail_frames`` are missing after the
    last frame (the video stream's own duration goes on past it). ``demux_damage`` is the first error the demuxer
    reported while reading the file (it resynchronised and went on), or ``None``. ``damaged_packets`` are decode
    positions of packets whose bytes fail their container's checksum (Matroska's CRC-32 elements);
    ``repeated_pts`` counts packets whose timestamp an earlier packet has.
    """

    num_packets: int
    fps: float
    duration: float
    width: int
    height: int
    codec: str
    pts: Tuple[int, ...] = ()
    keyframes: Tuple[int, ...] = ()
    sar: Fraction = Fraction(1)
    interlaced: bool = False
    declared_frames: int = 0
    present: float = 1.0
    demux_error: Optional[str] = None
    time_base: Optional[Fraction] = None
    holes: Tuple[Tuple[int, int], ...] = ()
    tail_frames: int = 0
    demux_damage: Optional[str] = None
    damaged_packets: Tuple[int, ...] = ()
    repeated_pts: int = 0

    @property
    def unnumbered(self) -> Optional[str]:
        """Why the frames of this file cannot be numbered as an undamaged copy would number them, or ``None``: it
        holds more frames than its container declares (a duplicated chunk, or files joined end to end, in a
        container that counts its frames: AVI, MP4), or its timestamps repeat where the demuxer found damage (a
        duplicated chunk of a Matroska file): either way a frame's number after the extra data is off by an
        unknown amount."""
        if self.declared_frames and self.num_packets > self.declared_frames:
            return (f"it holds {self.num_packets} video frames where its header declares {self.declared_frames} "
                    "(duplicated data, or files joined end to end)")
        if self.repeated_pts and (self.demux_damage or self.demux_error or self.damaged_packets):
            return (f"{self.repeated_pts} frames repeat the timestamps of others in a file the demuxer found damaged "
                    f"({self.demux_damage or self.demux_error or 'checksum mismatch'})")
        return None

    @property
    def num_frames(self) -> int:
        """Frames from the first to the last one the file holds, counting those missing in holes of the timestamps
        (:attr:`holes`): the clip's frame numbers run over ``range(num_frames)``."""
        return self.num_packets + sum(n for _, n in self.holes)

    @property
    def expected_frames(self) -> int:
        """The frames an undamaged file would hold: the container's frame count, else :attr:`num_frames` plus the
        frames missing at the end (:attr:`tail_frames`, from the video stream's own duration)."""
        return max(self.declared_frames, self.num_frames + self.tail_frames)

    def index_of_rank(self) -> np.ndarray:
        """int64 [num_packets]: the frame number of the ``r``-th frame in presentation order: ``r`` plus the frames
        lost in the holes before it (an undamaged decode would call it by that number)."""
        index = np.arange(self.num_packets, dtype=np.int64)
        for rank, lost in self.holes:
            index[rank:] += lost
        return index

    def hole_frames(self) -> List[int]:
        """Frame numbers that fall in :attr:`holes` (no packet holds them)."""
        index = self.index_of_rank()
        return [int(i) for rank, lost in self.holes for i in range(index[rank] - lost, index[rank])]

    def frame_times(self) -> np.ndarray:
        """float64 [num_packets]: each frame's presentation time in seconds, counted from the first frame, in
        presentation order; from the timestamps when they number the frames, else ``i / fps``."""
        if self.pts and self.time_base:
            pts = np.sort(np.asarray(self.pts, np.int64))
            return (pts - pts[0]).astype(np.float64) * float(self.time_base)
        return np.arange(self.num_packets, dtype=np.float64) / (self.fps if self.fps > 0 else 1.0)

    @property
    def ranks(self) -> Optional[np.ndarray]:
        """int64 [num_packets]: the presentation index of the frame in each packet, or ``None`` (no usable pts)."""
        if not self.pts:
            return None
        order = np.argsort(np.asarray(self.pts, np.int64), kind="stable")
        ranks = np.empty(len(order), np.int64)
        ranks[order] = np.arange(len(order))
        return ranks


def _one_line(err: BaseException) -> str:
    # PyAV errors carry FFmpeg's own message in ``strerror``; their str() adds an errno and the path.
    text = " ".join(str(getattr(err, "strerror", None) or err).split())
    return text[:300] or type(err).__name__


def _open(path: str):
    import av

    return av.open(path, metadata_errors="ignore")


def probe(path: str) -> VideoInfo:
    """Open ``path`` with PyAV, demux its video packets without decoding, and read fps, duration, size and SAR.

    Raises:
        VideoError: the file is missing, empty, not a media file, has no video stream or no frames.
    """
    with Video(path) as video:
        return video.info


PACKET_CACHE_BYTES = 64 << 20
"""Most bytes of packets one open :class:`Video` keeps from its probe for the first decode pass (a 15 s 720p clip
holds 1-5 MB; a bigger file is demuxed again)."""


class Video:
    """An open video: probed on opening (:func:`probe`'s :class:`VideoInfo` in ``info``), then decoded from the same
    open file (:meth:`decode`).

    Opening a file costs FFmpeg a stream-info pass that decodes its first picture (a 60-70 ms intra frame in a
    high-detail 720p clip), so the first decode pass reads the probed container instead of opening the file again:
    from the packets the probe kept in memory (up to :data:`PACKET_CACHE_BYTES`; demuxing a 15 s clip again costs
    about 2 ms, 3 % of a 320x240 stage), else by rewinding it. The rewind is checked: the first packet it demuxes
    must be the first packet the probe saw, else (and for every later pass, e.g. a full decode after a skipping one
    gave up) the file is opened afresh. ``passes`` says where each decode pass read from (``memory``, ``rewind`` or
    ``open``).

    Raises:
        VideoError: as :func:`probe`.
    """

    def __init__(self, path: str, info: Optional[VideoInfo] = None) -> None:
        self.path = path
        self.passes: List[str] = []
        self._probed = info is None  # the constructor opens the file to probe it
        self._container = None
        self._cache: Optional[List] = None
        self._first: Optional[Tuple[Optional[int], Optional[int], int]] = None
        if info is not None:  # probed before: every pass opens the file
            self.info = info
            return
        if not os.path.isfile(path):
            raise VideoError("file not found")
        if os.path.getsize(path) == 0:
            raise VideoError("empty file (0 bytes)")
        try:
            self._container = _open(path)
        except Exception as err:  # noqa: BLE001 - PyAV raises many types; all mean "cannot open"
            raise VideoError(f"cannot open: {_one_line(err)}") from None
        try:
            self.info = self._probe(self._container)
        except BaseException:
            self.close()
            raise

    @property
    def opens(self) -> int:
        """How many times the file was opened: for the probe, and for each pass that could not reuse it."""
        return int(self._probed) + self.passes.count("open")

    def __enter__(self) -> "Video":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the probed container if no decode pass took it."""
        container, self._container = self._container, None
        self._cache = None
        if container is not None:
            container.close()

    def decode(self, needed: Iterable[int], size: int, *, full: bool = False,
               vectors: Union[bool, Iterable[int]] = False) -> "Decoded":
        """:func:`decode_frames` of this video, the first pass reading the already open file."""
        return _decode(self, needed, size, full, vectors)

    def sample(self, count: int, size: int, *, diff_mode: str = "adjacent", min_decodable: float = 0.95,
               skip_damaged: bool = False, window_end: Optional[float] = None,
               vectors: bool = False) -> "SampledFrames":
        """Sample ``count`` frames and their difference partners (``diff_mode``, :mod:`fda.pipeline.sampling`) and
        decode them at ``size``; a damaged clip is resampled over the frames that decoded (only the clean ones with
        ``skip_damaged``), decoded again in full where needed, or fails below ``min_decodable``. With
        ``window_end``, samples and their partners are only frames presented before ``window_end`` seconds (from
        the first frame); ``meta["window"]`` records the window and how many frames it held. With ``vectors``,
        the codec's motion vectors of the sampled frames come from the same decode (``--mask-rule mv``).

        Frames are numbered by presentation time: frames lost in a hole of the timestamps keep their numbers (no
        frame after the hole moves), so a stored index names the frame an undamaged decode calls by that number. A
        codec that makes fewer frames than packets without an error (field-coded video) has its frames renumbered.
        Damage is charged where it lands: frames lost (holes, decode errors, corrupt frames), frames missing at the
        end, and frames decoded from a damaged reference (tainted) all count against ``min_decodable``; see
        docs/DAMAGE.md.

        Raises:
            VideoError: the clip cannot be used (truncated, unnumbered, one frame, too damaged, unstable decode).
        """
        return _sample(self, count, size, diff_mode, min_decodable, skip_damaged, window_end, vectors)

    @contextmanager
    def packets(self):
        """``(stream, packets)`` of a fresh pass over the video stream from its first packet.

        The first pass reads the packets the probe kept, or rewinds the probed container; later passes, or a rewind
        that does not land on the first packet, open the file again.
        """
        container, self._container = self._container, None
        cache, self._cache = self._cache, None
        packets = None
        if container is not None and cache is not None:
            stream = container.streams.video[0]
            packets = _handed_over(cache)
            self.passes.append("memory")
        elif container is not None and self.info.demux_error is None and self._first is not None:
            try:
                stream = container.streams.video[0]
                container.seek(0)
                it = (p for p in container.demux(stream) if p.size)
                head = next(it, None)
                if head is not None and (head.pts, head.dts, head.size) == self._first:
                    packets = itertools.chain([head], it)
                    self.passes.append("rewind")
            except Exception:  # noqa: BLE001 - a container that cannot rewind is opened again
                packets = None
        if packets is None:
            if container is not None:
                container.close()
            try:
                container = _open(self.path)
            except Exception as err:  # noqa: BLE001 - PyAV raises many types; all mean "cannot open"
                raise VideoError(f"cannot open: {_one_line(err)}") from None
            self.passes.append("open")
            stream = container.streams.video[0]
            packets = (p for p in container.demux(stream) if p.size)
        try:
            yield stream, packets
        finally:
            container.close()

    def _probe(self, container) -> VideoInfo:
        demux_error = None
        try:
            if not container.streams.video:
                raise VideoError("no video stream (audio-only or not a video)")
            stream = container.streams.video[0]
            cc = stream.codec_context
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else 0.0
            width, height, codec = cc.width, cc.height, cc.name
            sar = stream.sample_aspect_ratio or cc.sample_aspect_ratio or Fraction(1)
            interlaced = _field_order_interlaced(getattr(cc, "field_order", None))
            pts: List[Optional[int]] = []
            keyframes: List[int] = []
            cache: Optional[List] = []
            cached = 0
            all_packets = 0
            last_end = None
            durations: List[int] = []
            offsets: List[int] = []
            last_pts, last_timed = None, True  # the last frame's timestamp, and whether its packet has a duration
            with _ffmpeg_errors() as logged:
                try:
                    for packet in container.demux(stream):
                        if packet.dts is None and packet.pts is None and packet.size == 0:
                            continue  # the demuxer's end-of-stream packet
                        all_packets += 1
                        if packet.size == 0:
                            continue  # a dropped frame (AVI): no picture
                        if packet.is_keyframe:
                            keyframes.append(len(pts))
                        if not pts:
                            self._first = (packet.pts, packet.dts, packet.size)
                        pts.append(packet.pts)
                        offsets.append(packet.pos if packet.pos is not None else -1)
                        if cache is not None:
                            cached += packet.size
                            if cached <= PACKET_CACHE_BYTES:
                                cache.append(packet)
                            else:
                                cache = None  # a big file: the decode pass demuxes it again
                        if packet.pts is not None:
                            end = packet.pts + (packet.duration or 0)
                            last_end = end if last_end is None else max(last_end, end)
                            if packet.duration:
                                durations.append(packet.duration)
                            if last_pts is None or packet.pts > last_pts:
                                last_pts, last_timed = packet.pts, bool(packet.duration)
                except Exception as err:  # noqa: BLE001 - a read error mid-file: keep what came before
                    demux_error = _one_line(err)
                    cache = None  # the full decode that follows counts the error itself
            demux_damage = _one_line_text(logged[0][2]) if logged else None
            damaged_packets: List[int] = []
            if "matroska" in container.format.name:
                bad = matroska_crc_damage(self.path)
                damaged_packets = [q for q, at in enumerate(offsets) if any(a <= at < b for a, b in bad)]
                if bad and not demux_damage:
                    demux_damage = (f"Matroska CRC-32 mismatch in {len(bad)} element(s), the first at byte {bad[0][0]}")
            self._cache = cache
            declared_frames = max(int(stream.frames or 0), 0)
            tb = stream.time_base
            if stream.duration is not None and tb is not None:
                duration = float(stream.duration * tb)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            else:
                duration = len(pts) / fps if fps else 0.0
            start = stream.start_time if stream.start_time is not None else 0
            covered = float((last_end - start) * tb) if last_end is not None and tb is not None else None
            # Only the video stream's own duration can date its last frame: its own duration field, Matroska's
            # per-track DURATION tag (an end time), or the container's duration when the video is all it holds.
            # Never a duration another stream (audio) may have set.
            declared_duration = 0.0
            if stream.duration is not None:
                declared_duration = duration
            elif _tag_seconds(stream.metadata.get("DURATION")) is not None and last_end is not None and tb:
                declared_duration = _tag_seconds(stream.metadata.get("DURATION"))
                covered = float(last_end * tb)
            elif len(container.streams) == 1:
                declared_duration = duration
            container_format = container.format.name
        except VideoError:
            raise
        except Exception as err:  # noqa: BLE001 - PyAV raises many types; all mean "cannot open"
            raise VideoError(f"cannot open: {_one_line(err)}") from None
        if not pts:
            raise VideoError("no video frames" + (f" ({demux_error})" if demux_error else ""))
        if not width or not height:
            raise VideoError("video stream has no frame size")
        usable = all(p is not None for p in pts) and len(set(pts)) == len(pts)
        if usable and "avi" in container_format.split(","):
            # AVI stores no presentation time: with reordered frames the demuxer's "pts" is the decode order.
            usable = not cc.has_b_frames
        ordered = np.sort(np.asarray(pts, np.int64)) if usable and tb and len(pts) > 2 else None
        interval = 1.0 / fps if fps else 0.0
        if ordered is not None and np.median(np.diff(ordered)) > 0:
            interval = float(np.median(np.diff(ordered))) * float(tb)
        elif durations and tb:
            interval = float(np.median(durations)) * float(tb)
        if covered is not None and not last_timed:
            covered += interval  # the last frame lasts a frame interval, though its packet does not say so
        tail_frames = 0
        if declared_frames:
            present = min(1.0, all_packets / declared_frames)
        elif covered is not None and declared_duration > 0 and len(pts) > 1:
            present = min(1.0, covered / declared_duration)
            if interval > 0:  # a deficit of at least 3/4 of a frame interval is a frame missing at the end
                tail_frames = max(0, int(np.floor((declared_duration - covered) / interval + 0.25)))
        else:
            present = 1.0
        # A timestamp gap alone is no proof of loss (encoders and cameras write gaps on purpose): frames are lost
        # in the gaps of a file the demuxer found damaged, or that stops short of its own length.
        damaged = bool(demux_damage or demux_error or tail_frames or present < 1.0 or damaged_packets)
        holes = timestamp_holes(ordered) if ordered is not None and damaged else []
        if holes:  # the packet read just before the demuxer lost its way may hold the damage (cut short, overrun)
            ranks = np.argsort(np.argsort(np.asarray(pts, np.int64), kind="stable"), kind="stable")
            pos_of_rank = np.argsort(ranks, kind="stable")
            damaged_packets = sorted(set(damaged_packets) | {int(pos_of_rank[r]) - 1 for r, _ in holes
                                                             if pos_of_rank[r] > 0})
        return VideoInfo(len(pts), fps, duration, width, height, codec, tuple(pts) if usable else (), tuple(keyframes),
                         Fraction(sar.numerator, sar.denominator) if sar else Fraction(1), interlaced, declared_frames,
                         present, demux_error, Fraction(tb.numerator, tb.denominator) if tb else None, tuple(holes),
                         tail_frames, demux_damage, tuple(damaged_packets),
                         len(pts) - len({p for p in pts if p is not None}) - sum(p is None for p in pts))


HOLE_FACTOR = 1.5
"""A timestamp gap longer than this many typical frame intervals is a hole where frames were lost."""


def timestamp_holes(pts: np.ndarray) -> List[Tuple[int, int]]:
    """Where frames are missing from the sorted presentation timestamps of a damaged file: ``[(rank, frames)]``.

    The typical interval is the median gap between consecutive timestamps (the stream's own rate, so a variable
    frame rate is measured, not assumed). A gap longer than :data:`HOLE_FACTOR` typical intervals lost
    ``round(gap / typical) - 1`` frames just before the frame of presentation rank ``rank``. The caller asks only
    for files with evidence of damage: a well-formed file may have gaps of its own.

    Args:
        pts: int64 [N] sorted presentation timestamps.
    """
    gaps = np.diff(pts)
    if len(gaps) < 2:
        return []
    typical = float(np.median(gaps))
    if typical <= 0:
        return []
    holes = [(int(i) + 1, int(round(gaps[i] / typical)) - 1) for i in np.nonzero(gaps > HOLE_FACTOR * typical)[0]]
    return [(rank, lost) for rank, lost in holes if lost > 0]


_EBML_SEGMENT, _EBML_CLUSTER, _EBML_CRC32 = 0x18538067, 0x1F43B675, 0xBF  # an ID below 0x10000000 at the top
# level is damage, but for Void (0xEC) and CRC-32 elements, which may stand anywhere


def _ebml_vint(data, at: int, keep_marker: bool) -> Tuple[Optional[int], int]:
    """An EBML variable-length integer at ``at``: ``(value, end)``; ``(None, end)`` for an unknown size (all ones)
    and ``(None, at)`` for a byte that starts none."""
    if at >= len(data) or data[at] == 0:
        return None, at
    length = 9 - data[at].bit_length()
    if at + length > len(data):
        return None, at
    value = int.from_bytes(data[at:at + length], "big")
    if not keep_marker:
        value &= (1 << (7 * length)) - 1
        if value == (1 << (7 * length)) - 1:
            return None, at + length
    return value, at + length


def matroska_crc_damage(path: str) -> List[Tuple[int, int]]:
    """Byte ranges ``[start, end)`` of a Matroska file's top-level elements that fail their CRC-32 element (FFmpeg
    and mkvmerge write one into each cluster and header element), or that the segment cannot account for (garbage
    up to the next cluster). Empty for a file without checksums; checking stops at an element of unknown size."""
    import mmap
    import zlib

    bad: List[Tuple[int, int]] = []
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            at = 0
            while at < len(data):  # top level: the EBML header, then the segment
                ident, head = _ebml_vint(data, at, True)
                size, body = _ebml_vint(data, head, False)
                if ident is None or body == head:
                    return bad
                if ident != _EBML_SEGMENT:
                    if size is None:
                        return bad
                    at = body + size
                    continue
                end = len(data) if size is None else min(len(data), body + size)
                at = body
                while at < end:
                    ident, head = _ebml_vint(data, at, True)
                    size, child = _ebml_vint(data, head, False) if ident is not None else (None, head)
                    if ident is None or child == head or (ident < 0x10000000 and ident not in (0xEC, _EBML_CRC32)):
                        resume = data.find(_EBML_CLUSTER.to_bytes(4, "big"), at + 1, end)
                        resume = end if resume < 0 else resume
                        bad.append((at, resume))
                        at = resume
                        continue
                    if size is None:
                        return bad  # a live stream's cluster of unknown size: nothing to check against
                    stop = child + size
                    if stop > end:
                        return bad  # cut short: the truncation is counted elsewhere
                    crc_id, crc_head = _ebml_vint(data, child, True)
                    crc_size, crc_body = _ebml_vint(data, crc_head, False)
                    if crc_id == _EBML_CRC32 and crc_size == 4:
                        want = int.from_bytes(data[crc_body:crc_body + 4], "little")
                        if zlib.crc32(data[crc_body + 4:stop]) != want:
                            bad.append((at, stop))
                    at = stop
                return bad
    except (OSError, ValueError):
        return bad
    return bad


def _tag_seconds(value: Optional[str]) -> Optional[float]:
    """Matroska's per-track ``DURATION`` tag (``00:00:06.000000000``, written by FFmpeg and mkvmerge) in seconds."""
    match = re.match(r"^\s*(\d+):(\d{1,2}):(\d{1,2}(?:\.\d*)?)\s*$", value or "")
    if not match:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@contextmanager
def _ffmpeg_errors():
    """Collect the errors FFmpeg logs in this thread while the block runs (``[(level, name, message)]``): a demuxer
    that meets damaged data logs it, resynchronises and goes on, and says so nowhere else."""
    import av.logging

    old = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture(local=True) as logs:
            yield logs
    finally:
        av.logging.set_level(old)


def _one_line_text(text: str) -> str:
    return " ".join(str(text).split())[:300]


def _handed_over(cache: List) -> Iterator:
    """Yield the probe's packets in order, letting go of each one as it is handed to the decoder."""
    cache.reverse()
    while cache:
        yield cache.pop()


def _field_order_interlaced(field_order) -> bool:
    """Whether a codec's field order says interlaced (FFmpeg: 0 unknown, 1 progressive, 2..5 TT/BB/TB/BT)."""
    try:
        return int(field_order) >= 2
    except (TypeError, ValueError):
        return str(field_order).lower().split(".")[-1] in ("tt", "bb", "tb", "bt")


# ----------------------------------------------------------------------------------------------------------------
# Geometry: display matrix, sample aspect ratio, short-side resize + centre crop


def display_transform(matrix: Optional[Sequence[int]]) -> Tuple[bool, bool, bool]:
    """``(transpose, flip_rows, flip_cols)`` that turn a stored picture upright, from FFmpeg's display matrix.

    The matrix maps a stored pixel ``(x, y)`` to the display as ``x' = a x + c y``, ``y' = b x + d y`` (its first
    two rows are ``a b .`` and ``c d .``, 16.16 fixed point). Only right-angle rotations and flips are applied;
    other angles are rounded to the nearest right angle.

    Args:
        matrix: the 9 int32 values of an ``AV_FRAME_DATA_DISPLAYMATRIX``, or ``None``.
    """
    if matrix is None:
        return False, False, False
    a, b, _, c, d = matrix[:5]
    if abs(a) + abs(d) >= abs(b) + abs(c):  # no transpose: x' = a x, y' = d y
        return False, d < 0, a < 0
    # transposed: x' = c y, y' = b x, so rows of the display come from stored columns
    return True, b < 0, c < 0


def rotation_degrees(matrix: Optional[Sequence[int]]) -> int:
    """Counter-clockwise rotation a display matrix applies, rounded to a right angle (what the json records).

    A mirrored matrix (``-display_hflip``) reports the rotation it has besides the horizontal flip.
    """
    if matrix is None:
        return 0
    a, b, c, d = matrix[0], matrix[1], matrix[3], matrix[4]
    if a * d - b * c < 0:
        a = -a  # a mirrored matrix is a rotation with its x column negated (av_display_matrix_flip)
    return int(round(-np.degrees(np.arctan2(b, a)) / 90.0)) * 90 % 360  # as av_display_rotation_get


def orient(image: np.ndarray, transform: Tuple[bool, bool, bool]) -> np.ndarray:
    """Apply :func:`display_transform`'s result to uint8 [H, W, C] (returns a contiguous array)."""
    transpose, flip_rows, flip_cols = transform
    if transpose:
        image = image.transpose(1, 0, 2)
    if flip_rows:
        image = image[::-1]
    if flip_cols:
        image = image[:, ::-1]
    return np.ascontiguousarray(image)


def center_square(frame: np.ndarray, size: int, sar: Fraction = Fraction(1)) -> np.ndarray:
    """Short-side resize to ``size`` and centre crop in display geometry, as one crop-then-resize.

    The crop is the central square of the picture as displayed (stored width times ``sar``), so a 640x720 clip with
    SAR 2:1 (1280x720 on screen) keeps 360x720 stored pixels, resized to ``size`` x ``size``.

    Args:
        frame: uint8 [H, W, C] as stored.
        sar: sample (pixel) aspect ratio, width / height of one stored pixel.

    Returns:
        uint8 [size, size, C].
    """
    h, w = frame.shape[:2]
    sar = sar if sar and sar > 0 else Fraction(1)
    side = min(h, w * sar)  # in display pixels == stored rows
    crop_h = max(1, min(h, int(round(side))))
    crop_w = max(1, min(w, int(round(side / sar))))
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    crop = frame[top:top + crop_h, left:left + crop_w]
    if crop_h == size and crop_w == size:
        return np.ascontiguousarray(crop)
    # Area averaging where it matters (>= 2x down: antialiasing); bilinear for mild downscales, where it looks the
    # same and costs a fraction; bicubic up. The larger of the two axes' factors decides.
    shrink = max(crop_h, crop_w) / size
    interp = cv2.INTER_AREA if shrink >= 2 else (cv2.INTER_LINEAR if shrink > 1 else cv2.INTER_CUBIC)
    return cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=interp)


# ----------------------------------------------------------------------------------------------------------------
# Decoding


@dataclass
class Decoded:
    """What :func:`decode_frames` got.

    Attributes:
        frames: frame number -> uint8 [size, size, 3] RGB, upright, display aspect.
        count: frames the decoder produced (a full decode), or ``None`` after a skipping decode.
        good: presentation indices that decoded cleanly (a full decode), else ``None``.
        tainted: those of ``good`` decoded from a damaged reference (a decode error or a corrupt frame earlier in
            their group of pictures, see :func:`taint`), sorted; empty after a skipping decode (it met no damage).
        errors: decode errors (packets the codec rejected) plus frames it flagged corrupt.
        full: whether every packet was decoded.
        rotation: counter-clockwise degrees applied from the display matrix; ``flip`` a mirror was applied too.
        sar: the sample aspect ratio applied.
        deinterlaced: how many of the returned frames were flagged interlaced and deinterlaced.
        vectors: with ``vectors=True`` (``--mask-rule mv``), frame number -> the codec's motion vectors of that
            frame in stored geometry (:func:`stored_vectors`, converted when first read: :class:`FrameVectors`),
            ``None`` for a frame without any (intra frames, codecs that export none); else ``None``.
    """

    frames: Dict[int, np.ndarray]
    count: Optional[int] = None
    good: Optional[List[int]] = None
    tainted: List[int] = dataclasses.field(default_factory=list)
    errors: int = 0
    full: bool = False
    rotation: int = 0
    flip: bool = False
    sar: Fraction = Fraction(1)
    deinterlaced: int = 0
    vectors: Optional[Mapping[int, Optional[np.ndarray]]] = None


# --- the codec's motion vectors (--mask-rule mv; added for issue 22) -------------------------------------------
EXPORT_MVS = {"flags2": "+export_mvs"}
"""Codec option that makes FFmpeg's decoders (H.264, MPEG-1/2/4; not HEVC, VP9 or AV1) attach each inter frame's
motion vectors as side data. Set only when the vectors are asked for: the default decode is unchanged."""


def stored_vectors(raw: np.ndarray, width: int, height: int, size: int, sar: Fraction = Fraction(1),
                   transform: Tuple[bool, bool, bool] = (False, False, False)) -> np.ndarray:
    """Map FFmpeg's motion vectors of one frame into stored geometry (:func:`center_square`, then :func:`orient`).

    Args:
        raw: the structured array of ``AV_FRAME_DATA_MOTION_VECTORS`` (``source, w, h, src_x, src_y, dst_x, dst_y,
            flags, motion_x, motion_y, motion_scale``), coded-picture pixels.
        width, height: the coded picture's size.
        transform: :func:`display_transform` of the frame.

    Returns:
        float32 [N, 6]: per block ``x0, y0, x1, y1`` (its rectangle in the stored ``size`` x ``size`` frame, not
        clipped) and ``mx, my``, where the block's content was in the previous picture minus where it is, in stored
        pixels (a vector to a future reference is negated, so a pan gives one direction whatever the reference).
    """
    side = min(height, width * sar)
    crop_h, crop_w = max(1.0, min(height, float(side))), max(1.0, min(width, float(side / sar)))
    top, left = (height - crop_h) / 2.0, (width - crop_w) / 2.0
    sx, sy = size / crop_w, size / crop_h
    scale = np.maximum(raw["motion_scale"].astype(np.float32), 1)
    sign = np.where(raw["source"] > 0, -1.0, 1.0).astype(np.float32)
    cx, cy = (raw["dst_x"] - left) * sx, (raw["dst_y"] - top) * sy
    hw, hh = raw["w"] * sx / 2.0, raw["h"] * sy / 2.0
    mx = raw["motion_x"] / scale * sign * sx
    my = raw["motion_y"] / scale * sign * sy
    x0, y0, x1, y1 = cx - hw, cy - hh, cx + hw, cy + hh
    transpose, flip_rows, flip_cols = transform
    if transpose:
        x0, y0, x1, y1, mx, my = y0, x0, y1, x1, my, mx
    if flip_rows:
        y0, y1, my = size - y1, size - y0, -my
    if flip_cols:
        x0, x1, mx = size - x1, size - x0, -mx
    return np.stack([x0, y0, x1, y1, mx, my], axis=1).astype(np.float32)


def _frame_vectors(frame, convert: "_Converter") -> Optional[tuple]:
    """The arguments of :func:`stored_vectors` for a decoded frame's motion vectors (a copy of FFmpeg's array; the
    mapping waits until they are read, :class:`FrameVectors`), or ``None`` when it carries none."""
    data = frame.side_data.get("MOTION_VECTORS")
    if data is None or len(data) == 0:
        return None
    raw = data.to_ndarray()
    # copied as bytes: numpy copies a structured array field by field (15 us a frame of 500 vectors, 2.6 as bytes)
    return (raw.view(np.uint8).copy().view(raw.dtype), frame.width, frame.height, convert.size, convert.sar,
            display_transform(_display_matrix(frame)))


class FrameVectors(MutableMapping):
    """Frame number -> its motion vectors in stored geometry (float32 [N, 6], :func:`stored_vectors`) or ``None``.

    FFmpeg exports the vectors of every frame a decode makes, but only those of ``wanted`` (frame numbers: the
    sampled frames) are read, and each frame's are mapped into stored geometry when first read (then kept). Stored
    values are :func:`_frame_vectors`' arguments (or ``None``, or an array already mapped)."""

    def __init__(self, wanted: Iterable[int] = ()) -> None:
        self._raw: Dict[int, Any] = {}
        self.wanted = set(wanted)

    def __getitem__(self, key: int) -> Optional[np.ndarray]:
        value = self._raw[key]
        if isinstance(value, tuple):
            value = self._raw[key] = stored_vectors(*value)
        return value

    def __setitem__(self, key: int, value: Any) -> None:
        self._raw[key] = value

    def __delitem__(self, key: int) -> None:
        del self._raw[key]

    def __iter__(self) -> Iterator[int]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def renumbered(self, numbering: np.ndarray) -> "FrameVectors":
        """The same vectors under frame numbers ``numbering[key]`` (none mapped on the way)."""
        out = FrameVectors(int(numbering[r]) for r in self.wanted)
        out._raw = {int(numbering[r]): v for r, v in self._raw.items()}
        return out


# --- end of the motion vectors -------------------------------------------------------------------------------


class _NeedFull(Exception):
    """A skipping decode saw something it cannot vouch for: decode everything instead."""


class _Renumber(Exception):
    """Decoded frames carry timestamps no packet has (or out of order): number frames in output order."""


class _NeedNeighbours(Exception):
    """A needed frame is interlaced but the container did not say so: decode again with its neighbours."""


def _display_matrix(frame) -> Optional[Tuple[int, ...]]:
    try:
        data = frame.side_data.get("DISPLAYMATRIX")
    except Exception:  # noqa: BLE001 - older PyAV: no side data lookup
        return None
    if data is None:
        return None
    raw = bytes(data)
    return struct.unpack("9i", raw[:36]) if len(raw) >= 36 else None


def _yadif(prev, cur, nxt):
    """Deinterlace ``cur`` with its neighbours (``None`` at the clip's ends), as a whole-clip yadif pass would."""
    import av

    graph = av.filter.Graph()
    src = graph.add_buffer(width=cur.width, height=cur.height, format=cur.format, time_base=Fraction(1, 1000))
    yadif = graph.add("yadif", "mode=send_frame:parity=auto:deint=all")
    sink = graph.add("buffersink")
    src.link_to(yadif)
    yadif.link_to(sink)
    graph.configure()
    frames = [f for f in (prev, cur, nxt) if f is not None]
    target = frames.index(cur)
    for i, f in enumerate(frames):
        f.pts = i
        src.push(f)
    src.push(None)
    out = []
    while True:
        try:
            out.append(sink.pull())
        except (av.error.EOFError, av.error.BlockingIOError):
            break
    if len(out) != len(frames):  # send_frame mode: one output per input, in order (yadif doubles the time base)
        raise VideoError(f"deinterlacing gave {len(out)} frames for {len(frames)}")
    return out[target]


_DEEP_YUV = re.compile(r"(yuva?4[0-4][0-4]p)(9|10|12|14|16)(le|be)$")


def _to_rgb(frame) -> np.ndarray:
    """uint8 [H, W, 3] RGB from any pixel format (alpha dropped, grey replicated).

    High-bit-depth YUV is first reduced to 8 bits at its own chroma subsampling: libswscale's direct 10-bit YUV to
    RGB path (as PyAV calls it) was measured 7.4 grey levels off the source against 1.4 for this route.
    """
    deep = _DEEP_YUV.match(frame.format.name)
    if deep:
        frame = frame.reformat(format=deep.group(1))
    return frame.to_ndarray(format="rgb24")


def _plane(frame, index: int, height: int, width: int) -> np.ndarray:
    plane = frame.planes[index]
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:height, :width]


# Limited-range Y'CbCr -> R'G'B' (rows R, G, B; columns Y, U, V, offset), as libswscale and ffmpeg apply them.
_YUV2RGB = {
    601: np.array([[1.164383, 0.0, 1.596027], [1.164383, -0.391762, -0.812968], [1.164383, 2.017232, 0.0]]),
    709: np.array([[1.164383, 0.0, 1.792741], [1.164383, -0.213249, -0.532909], [1.164383, 2.112402, 0.0]]),
}
_YUV2RGB_AFFINE = {k: np.hstack([m, -(m @ np.array([16.0, 128.0, 128.0]))[:, None]]).astype(np.float32)
                   for k, m in _YUV2RGB.items()}


def _yuv420_square(frame, size: int, sar: Fraction) -> Optional[np.ndarray]:
    """:func:`center_square` of the RGB picture for 8-bit limited-range 4:2:0 frames (nearly all video), done on
    the Y, U and V planes before the colour conversion (4-10x cheaper at 720p than converting the whole picture):
    each plane's crop is resized to ``size`` x ``size``, then one affine colour transform gives RGB (BT.709
    coefficients where the frame says so, else BT.601, as libswscale).

    Returns:
        uint8 [size, size, 3] RGB, or ``None`` for other formats.
    """
    if frame.format.name != "yuv420p" or int(frame.color_range or 0) == 2:
        return None
    h, w = frame.height, frame.width
    side = min(h, w * sar)
    crop_h = min(h, max(2, int(round(side)))) & ~1
    crop_w = min(w, max(2, int(round(side / sar)))) & ~1
    top, left = ((h - crop_h) // 2) & ~1, ((w - crop_w) // 2) & ~1
    shrink = max(crop_h, crop_w) / size
    interp = cv2.INTER_AREA if shrink >= 2 else (cv2.INTER_LINEAR if shrink > 1 else cv2.INTER_CUBIC)
    chroma_interp = cv2.INTER_AREA if shrink >= 4 else (cv2.INTER_LINEAR if shrink > 2 else cv2.INTER_CUBIC)
    planes = [cv2.resize(_plane(frame, 0, h, w)[top:top + crop_h, left:left + crop_w], (size, size),
                         interpolation=interp)]
    for i in (1, 2):
        plane = _plane(frame, i, (h + 1) // 2, (w + 1) // 2)
        crop = plane[top // 2:(top + crop_h) // 2, left // 2:(left + crop_w) // 2]
        planes.append(cv2.resize(crop, (size, size), interpolation=chroma_interp))
    matrix = _YUV2RGB_AFFINE[709 if int(frame.colorspace or 0) == 1 else 601]
    return cv2.transform(cv2.merge(planes), matrix)


class _Converter:
    """Turns decoded frames into the stored uint8 [size, size, 3] RGB, upright and in display aspect."""

    def __init__(self, size: int, sar: Fraction) -> None:
        self.size, self.sar = size, sar
        self.rotation, self.flip, self.deinterlaced = 0, False, 0

    def __call__(self, frame, prev=None, nxt=None) -> np.ndarray:
        matrix = _display_matrix(frame)
        if frame.interlaced_frame:
            frame = _yadif(prev, frame, nxt)
            self.deinterlaced += 1
        square = _yuv420_square(frame, self.size, self.sar)
        if square is None:
            square = center_square(_to_rgb(frame), self.size, self.sar)
        transform = display_transform(matrix)
        self.rotation = rotation_degrees(matrix)
        self.flip = matrix is not None and matrix[0] * matrix[4] - matrix[1] * matrix[3] < 0
        return orient(square, transform) if any(transform) else square


def _plan(info: VideoInfo, ranks: np.ndarray, wanted: Sequence[int]) -> np.ndarray:
    """bool [num_packets]: packets to send to the decoder (the rest are dropped before it)."""
    n = info.num_packets
    pos_of_rank = np.empty(n, np.int64)
    pos_of_rank[ranks] = np.arange(n)
    keys = list(info.keyframes) or [0]
    if keys[0] != 0:
        keys = [0] + keys  # the first packet is where decoding starts, keyframe flag or not
    send = np.zeros(n, bool)
    for r in wanted:
        d = int(pos_of_rank[r])
        k = bisect.bisect_right(keys, d) - 1
        # A frame shown before its keyframe (an open GOP's leading picture) may reference the previous GOP.
        while k > 0 and ranks[keys[k]] > r:
            k -= 1
        send[keys[k]:d + 1] = True
    return send


def _decode_skipping(video: "Video", wanted: Sequence[int], decode_set: set, convert: _Converter,
                     vectors: Optional[FrameVectors] = None) -> Dict[int, np.ndarray]:
    info = video.info
    ranks = info.ranks
    if ranks is None:
        raise _NeedFull()
    send = _plan(info, ranks, sorted(decode_set)).tolist()
    rank_of_pts = {p: int(r) for p, r in zip(info.pts, ranks)}
    need_pkt = [int(r) in decode_set for r in ranks]
    last_sent = max(i for i, flag in enumerate(send) if flag)
    wanted_set = set(wanted)
    total = info.num_packets
    held: Dict[int, object] = {}
    out: Dict[int, np.ndarray] = {}
    last_rank = -1
    restart_rank = 0  # rank of the keyframe decoding (re)started at: frames shown before it lead it

    def leading(r: Optional[int]) -> bool:
        # An open GOP's leading picture nobody needs, decoded after a restart without the previous group it
        # references: the strict decoder rejects it, and rightly, but no needed frame depends on it.
        return r is not None and r < restart_rank and r not in decode_set

    def take(frames) -> None:
        nonlocal last_rank
        for fr in frames:
            r = rank_of_pts.get(fr.pts)
            if fr.is_corrupt and leading(r):
                continue
            if r is None or r <= last_rank or fr.is_corrupt:
                raise _NeedFull()
            last_rank = r
            if r in decode_set:
                if fr.interlaced_frame and r in wanted_set and not ({r - 1, r + 1} <= decode_set | {-1, total}):
                    raise _NeedNeighbours()
                if vectors is not None and r in vectors.wanted:
                    vectors[r] = _frame_vectors(fr, convert)
                held[r] = fr
                _convert_ready(held, wanted_set, out, convert, total, done=False)

    def decode(packet, pos: int = -1) -> None:
        seen = len(logged)
        try:
            frames = cc.decode(packet)
        except Exception:  # noqa: BLE001 - any decode error: let the full decode count it
            if pos >= 0 and leading(int(ranks[pos])):
                return
            raise _NeedFull() from None
        # A picture the codec concealed is flagged nowhere PyAV shows, but the codec logs it.
        if any(not _SKIP_ARTEFACT.search(m[2]) for m in logged[seen:]) and not (pos >= 0 and leading(int(ranks[pos]))):
            raise _NeedFull()
        take(frames)

    with video.packets() as (stream, packets), _ffmpeg_errors() as logged:
        cc = stream.codec_context
        cc.thread_count = 1
        if vectors is not None:
            cc.options = {**cc.options, **EXPORT_MVS}
        pos = 0
        mode = ""
        sending = started = False
        # Dropped packets cost only their demux (all of a clip's packets demux in 1-10 ms), so no seeking.
        for packet in packets:
            if pos > last_sent:
                break
            if send[pos]:
                if not sending and started:
                    decode(None)  # after a gap: drain what is buffered, then restart at this keyframe
                    cc.flush_buffers()
                if not sending:
                    restart_rank = int(ranks[pos])
                sending = started = True
                wanted_mode = "DEFAULT" if need_pkt[pos] else "NONREF"
                if wanted_mode != mode:
                    cc.skip_frame = mode = wanted_mode
                decode(packet, pos)
            else:
                sending = False
            pos += 1
        if pos <= last_sent:
            raise _NeedFull()  # fewer packets than the probe counted
        cc.skip_frame = "DEFAULT"
        decode(None)
    _convert_ready(held, wanted_set, out, convert, info.num_packets, done=True)
    if set(out) != wanted_set:
        raise _NeedFull()
    return out


def _convert_ready(held: Dict[int, object], wanted: set, out: Dict[int, np.ndarray], convert: _Converter,
                   total: int, done: bool) -> None:
    """Convert held frames whose neighbours (for deinterlacing) are in; drop frames nothing waits for any more."""
    for r in sorted(held):
        if r not in wanted or r in out:
            continue
        frame = held[r]
        if frame.interlaced_frame:
            if r + 1 < total and r + 1 not in held and not done:
                continue  # yadif needs the next frame too
            out[r] = convert(frame, held.get(r - 1), held.get(r + 1))
        else:
            out[r] = convert(frame)
    pending = {w for w in wanted if w not in out}
    for r in list(held):
        if not ({r, r - 1, r + 1} & pending):
            del held[r]


def _decode_full(video: "Video", wanted: Sequence[int], convert: _Converter, by_pts: bool = True,
                 vectors: Optional[Set[int]] = None) -> Decoded:
    info = video.info
    ranks = info.ranks if by_pts else None
    rank_of_pts = {p: int(r) for p, r in zip(info.pts, ranks)} if ranks is not None else None
    wanted_set = set(wanted)
    keep = wanted_set | {w - 1 for w in wanted_set} | {w + 1 for w in wanted_set}
    held: Dict[int, object] = {}
    out: Dict[int, np.ndarray] = {}
    good: List[int] = []
    errors = 0
    count = 0
    found: Optional[FrameVectors] = None if vectors is None else FrameVectors(vectors)
    position = 0  # decode position of the packet being decoded
    restarts: List[int] = []  # decode positions (pts numbering) or output numbers of clean restart points
    damage: List[int] = list(info.damaged_packets)  # the same, of damaged packets or frames
    leaves: set = set()  # decode positions of pictures nothing references (their damage goes nowhere)

    def take(frames) -> None:
        nonlocal count, errors
        for fr in frames:
            r = count if rank_of_pts is None else rank_of_pts.get(fr.pts, -1)
            count += 1
            if rank_of_pts is None and fr.key_frame:
                restarts.append(r)
            if fr.is_corrupt:
                errors += 1
                damage.append(r if rank_of_pts is None else (int(pos_of_rank[r]) if r >= 0 else position))
                continue
            if r < 0 or (good and r <= good[-1]):
                raise _Renumber()  # frames the packets' timestamps do not name: number them in output order
            good.append(r)
            if found is not None and r in found.wanted:
                found[r] = _frame_vectors(fr, convert)
            if r in keep:
                held[r] = fr
                _convert_ready(held, wanted_set, out, convert, info.num_packets, done=False)

    if ranks is not None:
        pos_of_rank = np.empty(len(ranks), np.int64)
        pos_of_rank[ranks] = np.arange(len(ranks))
    with video.packets() as (stream, packets):
        cc = _strict(stream.codec_context)
        codec = cc.name
        if vectors is not None:
            cc.options = {**cc.options, **EXPORT_MVS}
        try:
            for position, packet in enumerate(packets):
                if rank_of_pts is not None:
                    if packet.is_keyframe and _clean_restart(codec, packet):
                        restarts.append(position)
                    elif packet.is_disposable or _unreferenced(codec, packet):
                        leaves.add(position)
                try:
                    frames = cc.decode(packet)
                except Exception:  # noqa: BLE001 - a packet the codec rejects: counted, decoding goes on
                    errors += 1
                    damage.append(position if rank_of_pts is not None else count)
                    continue
                take(frames)
            position += 1
            take(cc.decode(None))
        except _Renumber:
            raise
        except Exception:  # noqa: BLE001 - a read error: what was decoded so far stands
            errors += 1
            damage.append(position if rank_of_pts is not None else count)
    _convert_ready(held, wanted_set, out, convert, info.num_packets, done=True)
    if rank_of_pts is not None:
        hit = taint([d for d in damage if d not in leaves], restarts, info.num_packets, ranks) + damage
        tainted = sorted(set(good) & {int(ranks[q]) for q in hit if 0 <= q < len(ranks)})
    else:  # output order: a damaged frame may be referenced by the frames around it until the next keyframe
        depth = max(int(getattr(stream.codec_context, "has_b_frames", 0) or 0), 2)
        hit = taint([max(0, d - depth) for d in damage], restarts, max(count, 1))
        tainted = sorted(set(good) & set(hit))
    return Decoded(out, count=count, good=good, tainted=tainted, errors=errors, full=True, vectors=found)


def taint(damage: Sequence[int], restarts: Sequence[int], total: int,
          ranks: Optional[np.ndarray] = None) -> List[int]:
    """Positions whose pictures depend on a damaged one: from each damaged position up to the next clean restart
    point (an IDR for H.264, an IRAP for HEVC, a keyframe otherwise), plus that restart's leading pictures (decoded
    after it, shown before it: they may reference the damaged group).

    Args:
        damage: decode positions of packets the codec rejected or whose frame it flagged corrupt.
        restarts: decode positions of clean restart points, ascending.
        total: packets in the clip.
        ranks: int64 [total] presentation rank of each position (for the leading pictures), or ``None``.

    Returns:
        The tainted positions, ascending (the damaged ones included).
    """
    hit = set()
    for d in damage:
        k = bisect.bisect_right(restarts, d)
        end = restarts[k] if k < len(restarts) else total
        hit.update(range(d, end))
        if ranks is not None and k < len(restarts):
            after = restarts[k + 1] if k + 1 < len(restarts) else total
            hit.update(q for q in range(end + 1, after) if ranks[q] < ranks[end])
    return sorted(h for h in hit if 0 <= h < total)


_SKIP_ARTEFACT = re.compile(r"mmco: unref short failure")
"""What H.264 logs when a picture's memory management names a reference the skipping decode left out (harmless)."""


def _strict(cc):
    """``cc`` set up for a checked decode: one thread (errors and frames stay in packet order) and FFmpeg's
    ``err_detect=explode``, so a picture the codec had to conceal (which FFmpeg flags nowhere PyAV shows) is a decode
    error or a frame flagged corrupt instead of a silently wrong picture."""
    cc.thread_count = 1
    cc.options = {**cc.options, "err_detect": "explode"}
    return cc


def _clean_restart(codec: str, packet) -> bool:
    """Whether a keyframe packet starts a picture nothing after it can reference around: an IDR access unit in
    H.264, an IRAP (IDR, CRA, BLA) in HEVC; any keyframe in other codecs."""
    if codec not in ("h264", "hevc"):
        return True
    types = _nal_types(bytes(packet), codec)
    if not types:
        return True  # unreadable: trust the container's keyframe flag
    if codec == "h264":
        return 5 in types
    return any(16 <= t <= 21 for t in types)


def _unreferenced(codec: str, packet) -> bool:
    """Whether no other picture can reference this packet's: every slice of an H.264 access unit has
    ``nal_ref_idc`` 0, or every slice of an HEVC one is a sub-layer non-reference picture (an even type below 16)."""
    if codec not in ("h264", "hevc"):
        return False
    data = bytes(packet)
    if codec == "h264":
        heads = _nal_types(data, codec, raw=True)
        slices = [h for h in heads if h & 0x1F in (1, 5)]
        return bool(slices) and all(h & 0x60 == 0 for h in slices)
    slices = [t for t in _nal_types(data, codec) if t < 32]
    return bool(slices) and all(t < 16 and t % 2 == 0 for t in slices)


def _nal_types(data: bytes, codec: str, raw: bool = False) -> List[int]:
    """NAL unit types (``raw``: the first header bytes) of an access unit, length-prefixed (MP4, Matroska) or
    with start codes (Annex B)."""
    def nal_type(first: int) -> int:
        if raw:
            return first
        return first & 0x1F if codec == "h264" else (first >> 1) & 0x3F

    types = []
    i = 0
    while i + 4 < len(data):  # length-prefixed, as MP4 and Matroska store it (4-byte lengths)
        size = int.from_bytes(data[i:i + 4], "big")
        if size <= 0 or i + 4 + size > len(data):
            break
        types.append(nal_type(data[i + 4]))
        i += 4 + size
    if types and i == len(data):
        return types
    return [nal_type(data[m.end()]) for m in re.finditer(b"\x00\x00\x01", data) if m.end() < len(data)]


def decode_frames(path: str, needed: Iterable[int], size: int, info: Optional[VideoInfo] = None, *,
                  full: bool = False, vectors: Union[bool, Iterable[int]] = False) -> Decoded:
    """Decode the frames numbered ``needed`` (0-based, presentation order) as ``size`` x ``size`` RGB.

    Decodes only what the needed frames depend on unless ``full`` (or the clip's timestamps cannot number its
    frames, or the skipping decode meets an error); a full decode also counts every frame and error, so the caller
    can tell a damaged clip (``Decoded.good`` shorter than ``info.num_packets``) and resample over what decoded.
    ``info`` is the clip's :func:`probe` (probed here when left out); :meth:`Video.decode` does the same on a
    video that is already open. ``vectors`` also exports the codec's motion vectors (:attr:`Decoded.vectors`; no
    extra decode): ``True`` of every needed frame, or of the needed frames numbered in an iterable (the sampled
    ones: reading a frame's vectors costs about 40 us, FFmpeg's export applies to every decoded frame regardless).

    Returns:
        :class:`Decoded`; a needed frame that did not decode is absent from ``frames``.

    Raises:
        VideoError: the file cannot be opened or decoded at all.
    """
    with Video(path, info) as video:
        return video.decode(needed, size, full=full, vectors=vectors)


def _decode(video: Video, needed: Iterable[int], size: int, full: bool,
            vectors: Union[bool, Iterable[int]] = False) -> Decoded:
    info = video.info
    wanted = sorted({int(i) for i in needed})
    export = (None if vectors is False or vectors is None  # the frames whose vectors are read
              else set(wanted) if vectors is True else {int(i) for i in vectors})
    numbering = info.index_of_rank() if info.holes else None
    if numbering is not None:  # frame numbers count the frames lost in holes: decode by presentation rank
        rank_of_index = {int(i): r for r, i in enumerate(numbering)}
        wanted = sorted(rank_of_index[i] for i in wanted if i in rank_of_index)
        if export is not None:
            export = {rank_of_index[i] for i in export if i in rank_of_index}
    convert = _Converter(size, info.sar)
    renumbered = False
    full = full or bool(info.damaged_packets)  # packets that fail their checksum: count every frame
    try:
        result = None
        neighbours = info.interlaced
        while not full and info.pts and result is None:
            decode_set = set(wanted)
            if neighbours:
                decode_set |= {w - 1 for w in wanted if w > 0} | {w + 1 for w in wanted if w + 1 < info.num_packets}
            found: Optional[FrameVectors] = None if export is None else FrameVectors(export)
            try:
                result = Decoded(_decode_skipping(video, wanted, decode_set, convert, found), vectors=found)
            except _NeedNeighbours:
                if neighbours:
                    break
                neighbours = True
            except _NeedFull:
                break
        if result is None:
            try:
                convert = _Converter(size, info.sar)
                result = _decode_full(video, wanted, convert, vectors=export)
            except _Renumber:
                convert = _Converter(size, info.sar)
                result = _decode_full(video, wanted, convert, by_pts=False, vectors=export)
                renumbered = True
    except VideoError:
        raise
    except Exception as err:  # noqa: BLE001 - decoder libraries raise many types
        raise VideoError(f"decode failed: {_one_line(err)}") from None
    result.rotation, result.sar, result.deinterlaced = convert.rotation, info.sar, convert.deinterlaced
    result.flip = convert.flip
    if numbering is not None and renumbered:
        raise VideoError("frames cannot be numbered: the decoded frames carry timestamps no packet has, in a file "
                         "with holes in its timestamps")
    if numbering is not None:
        result.frames = {int(numbering[r]): f for r, f in result.frames.items()}
        result.good = None if result.good is None else [int(numbering[r]) for r in result.good]
        result.tainted = [int(numbering[r]) for r in result.tainted]
        if result.vectors is not None:
            result.vectors = result.vectors.renumbered(numbering)
    return result


# --------------------------------------------------------------------------------------------------------------
# Sampling a clip, with damage recovery


@dataclass(frozen=True)
class SampledFrames:
    """A sampled and decoded clip (:meth:`Video.sample`).

    Attributes:
        info: the probe.
        total: frames in the clip, as numbered.
        indices: int64 [T], the sampled frame numbers.
        partners: int64 [T], the frame each is differenced with.
        frames: uint8 [T, H, W, 3] RGB, the sampled frames.
        partners_frames: uint8 [T, H, W, 3] RGB, their partners.
        meta: the sample json's decode and damage fields (rotation, sar, frames lost, taint, ...).
        vectors: per sampled frame its motion vectors (asked for with ``vectors``), else ``None``.
    """

    info: VideoInfo
    total: int
    indices: np.ndarray
    partners: np.ndarray
    frames: np.ndarray
    partners_frames: np.ndarray
    meta: Dict[str, Any]
    vectors: Optional[List[Optional[np.ndarray]]] = None


def _ranges(values: Sequence[int]) -> List[List[int]]:
    """``[0, 1, 2, 7]`` -> ``[[0, 2], [7, 7]]`` (inclusive runs, for the json)."""
    out: List[List[int]] = []
    for v in sorted(values):
        if out and v == out[-1][1] + 1:
            out[-1][1] = v
        else:
            out.append([v, v])
    return out


def _sample(video: "Video", count: int, size: int, diff_mode: str, min_decodable: float, skip_damaged: bool,
            window_end: Optional[float], vectors: bool) -> "SampledFrames":
    """:meth:`Video.sample`'s work (its docstring)."""
    path = video.path
    info = video.info
    declared = info.expected_frames
    if info.present < min_decodable:
        held = (f"{info.num_packets} of its {info.declared_frames} frames" if info.declared_frames else
                f"{100 * info.present:.0f}% of its {info.duration:.2f} s" if not info.tail_frames else
                f"{info.num_packets} of its {declared} frames")
        raise VideoError(f"truncated file: it holds {held} (--min-decodable {min_decodable})"
                         + (f"; read error: {info.demux_error}" if info.demux_error else ""))
    if info.unnumbered:
        raise VideoError(f"frames cannot be numbered: {info.unnumbered}")
    total = info.num_frames
    if total < 2:
        raise VideoError("only 1 frame: a frame-difference mask needs at least 2")
    span = total if window_end is None else frames_before(info.frame_times(), window_end)  # frames [0, span)
    if window_end is not None and info.holes and span:
        span = int(info.index_of_rank()[span - 1]) + 1  # ranks -> frame numbers
    indices = sample_frame_indices(span, count)
    partners = partner_indices(indices, span, diff_mode)
    needed = needed_frames(indices, partners)
    export = indices.tolist() if vectors else False  # the sampled frames' motion vectors, not their partners'
    dec = video.decode(needed, size, full=bool(info.holes), vectors=export)  # holes: count every frame
    lost: List[int] = []
    tainted: List[int] = []
    frames = dec.frames
    if dec.full and (dec.good is None or len(dec.good) != total or dec.tainted
                     or any(i not in dec.frames for i in needed)):
        good = dec.good or []
        # No decode error: the codec simply makes fewer (or more) frames than there are packets (field-coded
        # video, packed frames); the clip is the frames it made. Errors or holes: the missing frames are lost.
        renumber = dec.errors == 0 and not info.holes
        tainted = dec.tainted
        clean = sorted(set(good) - set(tainted))
        if len(good) < 2 or (not renumber and len(clean) < min_decodable * declared):
            spread = f", {len(tainted)} decoded from a damaged reference" if tainted else ""
            holes = (f", {len(info.hole_frames())} missing in timestamp holes" if info.holes else "")
            raise VideoError(f"only {len(clean)} of {declared} frames decodable ({dec.errors} decode errors"
                             f"{spread}{holes}; --min-decodable {min_decodable})")
        usable = np.asarray(clean if skip_damaged and len(clean) >= 2 else good, np.int64)
        if window_end is not None:
            usable = usable[usable < span] if np.count_nonzero(usable < span) >= 2 else usable[:2]
        pick = sample_frame_indices(len(usable), count)
        pick_partners = partner_indices(pick, len(usable), diff_mode)
        indices, partners = usable[pick], usable[pick_partners]
        needed = needed_frames(indices, partners)
        if any(i not in dec.frames for i in needed) or (vectors and any(int(i) not in dec.vectors for i in indices)):
            dec = video.decode(needed, size, full=True, vectors=indices.tolist() if vectors else False)
        missing = [i for i in needed if i not in dec.frames]
        if missing:
            raise VideoError(f"frames {missing[:5]} decoded once but not again (unstable decode)")
        if renumber:
            log.debug("%s: %d packets, %d frames; numbering the frames", path, total, len(good))
            frames = {int(p): dec.frames[int(usable[p])] for p in set(pick.tolist()) | set(pick_partners.tolist())}
            if dec.vectors is not None:
                dec.vectors = {int(p): dec.vectors.get(int(usable[p])) for p in set(pick.tolist())}
            declared += len(good) - total  # a truncated tail stays counted
            indices, partners, total = pick, pick_partners, len(good)
            tainted = []
        else:
            lost = sorted(set(range(total)) - set(good))
            frames = dec.frames
    decode_meta = {"rotation": dec.rotation, "flip": dec.flip,
                   "sar": [dec.sar.numerator, dec.sar.denominator], "deinterlaced": dec.deinterlaced > 0,
                   "frames_lost": len(lost) + declared - total, "lost_at": _ranges(lost),
                   "truncated_frames": declared - total, "decode_errors": dec.errors}
    decode_meta.update(_damage_meta(info, total, declared - total, tainted, indices, partners))
    if window_end is not None:
        decode_meta["window"] = {"start": 0.0, "end": float(window_end), "frames": int(min(span, total)),
                                 "rule": "frames presented before 'end' seconds, counted from the first frame"}
    return SampledFrames(info, total, indices, partners, np.stack([frames[int(i)] for i in indices]),
                         np.stack([frames[int(i)] for i in partners]), decode_meta,
                         None if dec.vectors is None else [dec.vectors.get(int(i)) for i in indices])


def _damage_meta(info: VideoInfo, total: int, truncated: int, tainted: Sequence[int], indices: np.ndarray,
                 partners: np.ndarray) -> Dict[str, Any]:
    """The sample json's damage fields beyond the always-present ones, each only when it has something to say (a
    well-formed clip's json keeps its bytes): frames decoded from a damaged reference (``tainted_frames``,
    ``tainted_at``, and which stored frames and partners are among them), the demuxer's own report, and why
    ``num_frames``, ``fps`` and ``duration`` disagree when they do (``length_note``)."""
    meta: Dict[str, Any] = {}
    if tainted:
        bad = set(tainted)
        meta.update({"tainted_frames": len(bad), "tainted_at": _ranges(sorted(bad)),
                     "tainted": [k for k, i in enumerate(indices.tolist()) if i in bad],
                     "tainted_partners": [k for k, i in enumerate(partners.tolist()) if i in bad]})
    if info.holes:
        meta["holes"] = [[int(i), n] for i, n in zip(info.index_of_rank()[[r for r, _ in info.holes]].tolist(),
                                                     (n for _, n in info.holes))]
    if info.demux_damage:
        meta["demux_damage"] = info.demux_damage
    note = length_note(info, total, truncated)
    if note:
        meta["length_note"] = note
    return meta


def length_note(info: VideoInfo, total: int, truncated: int) -> Optional[str]:
    """Why ``num_frames / fps`` is more than a frame away from ``duration``, or ``None`` when they agree."""
    if info.fps <= 0 or info.duration <= 0:
        return None
    frame = 1.0 / info.fps
    if abs(total * frame - info.duration) <= frame * 1.01:
        return None
    if truncated and abs((total + truncated) * frame - info.duration) <= frame * 1.51:
        return (f"truncated: the video stream ends {truncated} frames before its declared duration "
                "(truncated_frames)")
    gaps = np.diff(info.frame_times())
    if len(gaps) > 1 and np.median(gaps) > 0 and gaps.max() > 1.5 * np.median(gaps) or truncated:
        return ("variable frame rate or missing frames: fps is the average rate the container declares, "
                "frames are numbered by presentation time")
    return ("the declared duration is not the video stream's: the container's duration covers a longer stream "
            "(audio) or says more than the video holds")
