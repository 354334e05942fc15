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
- **Corruption is counted.** A full decode counts decode errors and frames flagged corrupt; the caller decides
  what fraction of lost frames a clip may have (:class:`Decoded` lists them). :func:`probe` reports files whose
  packets stop short of the frame count or duration their container declares (truncated files).

Failures are values: :class:`VideoError` carries a one-line reason that the caller records.
"""

import bisect
import itertools
import logging
import os
import re
import shutil
import struct
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from fda.errors import EnvError

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
    container declares no count, of the declared duration) that the file actually holds: below 1 for a
    truncated file.
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

    def decode(self, needed: Iterable[int], size: int, *, full: bool = False, vectors: bool = False) -> "Decoded":
        """:func:`decode_frames` of this video, the first pass reading the already open file."""
        return _decode(self, needed, size, full, vectors)

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
                    if cache is not None:
                        cached += packet.size
                        if cached <= PACKET_CACHE_BYTES:
                            cache.append(packet)
                        else:
                            cache = None  # a big file: the decode pass demuxes it again
                    if packet.pts is not None:
                        end = packet.pts + (packet.duration or 0)
                        last_end = end if last_end is None else max(last_end, end)
            except Exception as err:  # noqa: BLE001 - a read error mid-file: keep what came before
                demux_error = _one_line(err)
                cache = None  # the full decode that follows counts the error itself
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
            # Only the video stream's own duration (or a container holding nothing else) can date the last frame.
            declared_duration = (duration if stream.duration is not None or len(container.streams) == 1 else 0.0)
            container_format = container.format.name
        except VideoError:
            raise
        except Exception as err:  # noqa: BLE001 - PyAV raises many types; all mean "cannot open"
            raise VideoError(f"cannot open: {_one_line(err)}") from None
        if not pts:
            raise VideoError("no video frames" + (f" ({demux_error})" if demux_error else ""))
        if not width or not height:
            raise VideoError("video stream has no frame size")
        if declared_frames:
            present = min(1.0, all_packets / declared_frames)
        elif covered is not None and declared_duration > 0 and len(pts) > 1:
            present = min(1.0, covered / declared_duration)
        else:
            present = 1.0
        usable = all(p is not None for p in pts) and len(set(pts)) == len(pts)
        if usable and "avi" in container_format.split(","):
            # AVI stores no presentation time: with reordered frames the demuxer's "pts" is the decode order.
            usable = not cc.has_b_frames
        return VideoInfo(len(pts), fps, duration, width, height, codec, tuple(pts) if usable else (), tuple(keyframes),
                         Fraction(sar.numerator, sar.denominator) if sar else Fraction(1), interlaced, declared_frames,
                         present, demux_error, Fraction(tb.numerator, tb.denominator) if tb else None)


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
        errors: decode errors (packets the codec rejected) plus frames it flagged corrupt.
        full: whether every packet was decoded.
        rotation: counter-clockwise degrees applied from the display matrix; ``flip`` a mirror was applied too.
        sar: the sample aspect ratio applied.
        deinterlaced: how many of the returned frames were flagged interlaced and deinterlaced.
        vectors: with ``vectors=True`` (``--mask-rule mv``), frame number -> the codec's motion vectors of that
            frame in stored geometry (:func:`stored_vectors`), ``None`` for a frame without any (intra frames,
            codecs that export none); else ``None``.
    """

    frames: Dict[int, np.ndarray]
    count: Optional[int] = None
    good: Optional[List[int]] = None
    errors: int = 0
    full: bool = False
    rotation: int = 0
    flip: bool = False
    sar: Fraction = Fraction(1)
    deinterlaced: int = 0
    vectors: Optional[Dict[int, Optional[np.ndarray]]] = None


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


def _frame_vectors(frame, convert: "_Converter") -> Optional[np.ndarray]:
    """The stored-geometry motion vectors of a decoded frame, or ``None`` when it carries none."""
    data = frame.side_data.get("MOTION_VECTORS")
    if data is None or len(data) == 0:
        return None
    return stored_vectors(data.to_ndarray(), frame.width, frame.height, convert.size, convert.sar,
                          display_transform(_display_matrix(frame)))
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
                     vectors: Optional[Dict[int, Optional[np.ndarray]]] = None) -> Dict[int, np.ndarray]:
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

    def take(frames) -> None:
        nonlocal last_rank
        for fr in frames:
            r = rank_of_pts.get(fr.pts)
            if r is None or r <= last_rank or fr.is_corrupt:
                raise _NeedFull()
            last_rank = r
            if r in decode_set:
                if fr.interlaced_frame and r in wanted_set and not ({r - 1, r + 1} <= decode_set | {-1, total}):
                    raise _NeedNeighbours()
                if vectors is not None and r in wanted_set:
                    vectors[r] = _frame_vectors(fr, convert)
                held[r] = fr
                _convert_ready(held, wanted_set, out, convert, total, done=False)

    def decode(packet) -> None:
        try:
            frames = cc.decode(packet)
        except Exception:  # noqa: BLE001 - any decode error: let the full decode count it
            raise _NeedFull() from None
        take(frames)

    with video.packets() as (stream, packets):
        cc = stream.codec_context
        cc.thread_count = 1
        if vectors is not None:
            cc.options = EXPORT_MVS
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
                sending = started = True
                wanted_mode = "DEFAULT" if need_pkt[pos] else "NONREF"
                if wanted_mode != mode:
                    cc.skip_frame = mode = wanted_mode
                decode(packet)
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
                 vectors: bool = False) -> Decoded:
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
    found: Optional[Dict[int, Optional[np.ndarray]]] = {} if vectors else None

    def take(frames) -> None:
        nonlocal count, errors
        for fr in frames:
            r = count if rank_of_pts is None else rank_of_pts.get(fr.pts, -1)
            count += 1
            if fr.is_corrupt:
                errors += 1
                continue
            if r < 0 or (good and r <= good[-1]):
                raise _Renumber()  # frames the packets' timestamps do not name: number them in output order
            good.append(r)
            if found is not None and r in wanted_set:
                found[r] = _frame_vectors(fr, convert)
            if r in keep:
                held[r] = fr
                _convert_ready(held, wanted_set, out, convert, info.num_packets, done=False)

    with video.packets() as (stream, packets):
        cc = stream.codec_context
        cc.thread_count = 1
        if vectors:
            cc.options = EXPORT_MVS
        try:
            for packet in packets:
                try:
                    frames = cc.decode(packet)
                except Exception:  # noqa: BLE001 - a packet the codec rejects: counted, decoding goes on
                    errors += 1
                    continue
                take(frames)
            take(cc.decode(None))
        except _Renumber:
            raise
        except Exception:  # noqa: BLE001 - a read error: what was decoded so far stands
            errors += 1
    _convert_ready(held, wanted_set, out, convert, info.num_packets, done=True)
    return Decoded(out, count=count, good=good, errors=errors, full=True, vectors=found)


def decode_frames(path: str, needed: Iterable[int], size: int, info: Optional[VideoInfo] = None, *,
                  full: bool = False, vectors: bool = False) -> Decoded:
    """Decode the frames numbered ``needed`` (0-based, presentation order) as ``size`` x ``size`` RGB.

    Decodes only what the needed frames depend on unless ``full`` (or the clip's timestamps cannot number its
    frames, or the skipping decode meets an error); a full decode also counts every frame and error, so the caller
    can tell a damaged clip (``Decoded.good`` shorter than ``info.num_packets``) and resample over what decoded.
    ``info`` is the clip's :func:`probe` (probed here when left out); :meth:`Video.decode` does the same on a
    video that is already open. ``vectors`` also exports the codec's motion vectors of the needed frames
    (:attr:`Decoded.vectors`; no extra decode).

    Returns:
        :class:`Decoded`; a needed frame that did not decode is absent from ``frames``.

    Raises:
        VideoError: the file cannot be opened or decoded at all.
    """
    with Video(path, info) as video:
        return video.decode(needed, size, full=full, vectors=vectors)


def _decode(video: Video, needed: Iterable[int], size: int, full: bool, vectors: bool = False) -> Decoded:
    info = video.info
    wanted = sorted({int(i) for i in needed})
    convert = _Converter(size, info.sar)
    try:
        result = None
        neighbours = info.interlaced
        while not full and info.pts and result is None:
            decode_set = set(wanted)
            if neighbours:
                decode_set |= {w - 1 for w in wanted if w > 0} | {w + 1 for w in wanted if w + 1 < info.num_packets}
            found: Optional[Dict[int, Optional[np.ndarray]]] = {} if vectors else None
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
                result = _decode_full(video, wanted, convert, vectors=vectors)
            except _Renumber:
                convert = _Converter(size, info.sar)
                result = _decode_full(video, wanted, convert, by_pts=False, vectors=vectors)
    except VideoError:
        raise
    except Exception as err:  # noqa: BLE001 - decoder libraries raise many types
        raise VideoError(f"decode failed: {_one_line(err)}") from None
    result.rotation, result.sar, result.deinterlaced = convert.rotation, info.sar, convert.deinterlaced
    result.flip = convert.flip
    return result
