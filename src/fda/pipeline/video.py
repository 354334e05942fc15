"""The only place that opens videos: finding ffmpeg, probing, counting frames exactly, decoding the needed frames.

Two decoders, both FFmpeg:

- ``opencv`` (default): in-process, through the FFmpeg libraries of the opencv-python wheel. Every frame is
  ``grab()``-ed in order (exact on AVI, MKV and variable-frame-rate sources, where seeking is not), and only the
  needed ones are ``retrieve()``-d and converted.
- ``ffmpeg``: the ffmpeg binary through ffmpeg-python, with a ``select`` filter that keeps only the needed frames
  (exact too, slower by a process start and a pipe), for sources the in-process build cannot open.

Frame counts come from demuxing the video stream's packets with PyAV (no decoding, container metadata is not
trusted), and every decode runs to the end of the stream, so the decoded count is known exactly; when it differs
from the packet count the indices are recomputed from the decoded count and the clip is decoded again.

Failures are values: :class:`VideoError` carries a one-line reason that the caller records.
"""

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

import cv2
import numpy as np

from fda.errors import EnvError

log = logging.getLogger(__name__)


class VideoError(Exception):
    """A video that cannot be used; ``str(err)`` is a one-line reason for the manifest."""


def find_ffmpeg() -> str:
    """Path of the ffmpeg binary: ``$FDA_FFMPEG``, then ``ffmpeg`` on PATH, then the imageio-ffmpeg wheel's binary.

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


def check_decoder(decoder: str) -> str:
    """Check once, up front, that ``decoder`` can run here; returns a version string for the manifest.

    Raises:
        EnvError: OpenCV was built without FFmpeg, or no ffmpeg binary exists.
    """
    if decoder == "opencv":
        if not cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG):
            raise EnvError("this OpenCV build has no FFmpeg backend: pip install opencv-python-headless, "
                           "or use --decoder ffmpeg")
        return f"opencv {cv2.__version__} (FFmpeg backend)"
    return ffmpeg_version(find_ffmpeg())


@dataclass(frozen=True)
class VideoInfo:
    """What the container says, plus the exact packet count."""

    num_packets: int
    fps: float
    duration: float
    width: int
    height: int
    codec: str


def _one_line(err: BaseException) -> str:
    # PyAV errors carry FFmpeg's own message in ``strerror``; their str() adds an errno and the path.
    text = " ".join(str(getattr(err, "strerror", None) or err).split())
    return text[:300] or type(err).__name__


def probe(path: str) -> VideoInfo:
    """Open ``path`` with PyAV, count its video packets without decoding, and read fps, duration and size.

    Raises:
        VideoError: the file is empty, not a media file, has no video stream or no frames.
    """
    import av

    if not os.path.isfile(path):
        raise VideoError("file not found")
    if os.path.getsize(path) == 0:
        raise VideoError("empty file (0 bytes)")
    try:
        with av.open(path, metadata_errors="ignore") as container:
            if not container.streams.video:
                raise VideoError("no video stream (audio-only or not a video)")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else 0.0
            width, height = stream.codec_context.width, stream.codec_context.height
            codec = stream.codec_context.name
            packets = 0
            for packet in container.demux(stream):
                if packet.size > 0:
                    packets += 1
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            else:
                duration = packets / fps if fps else 0.0
    except VideoError:
        raise
    except Exception as err:  # noqa: BLE001 - PyAV raises many types; all mean "cannot open"
        raise VideoError(f"cannot open: {_one_line(err)}") from None
    if packets == 0:
        raise VideoError("no video frames")
    if not width or not height:
        raise VideoError("video stream has no frame size")
    return VideoInfo(packets, fps, duration, width, height, codec)


def center_square(frame: np.ndarray, size: int) -> np.ndarray:
    """Short-side resize to ``size`` and center crop, as one crop-then-resize.

    Args:
        frame: uint8 [H, W, C].

    Returns:
        uint8 [size, size, C].
    """
    h, w = frame.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = frame[top:top + side, left:left + side]
    if side == size:
        return np.ascontiguousarray(crop)
    # Area averaging where it matters (>= 2x down: antialiasing); bilinear for mild downscales, where it looks the
    # same and costs a fraction; bicubic up.
    interp = cv2.INTER_AREA if side >= 2 * size else (cv2.INTER_LINEAR if side > size else cv2.INTER_CUBIC)
    return cv2.resize(crop, (size, size), interpolation=interp)


def _decode_opencv(path: str, needed: Iterable[int], size: int) -> Tuple[Dict[int, np.ndarray], Optional[int]]:
    wanted = set(needed)
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    if not cap.isOpened():
        raise VideoError("OpenCV/FFmpeg cannot open the file")
    frames: Dict[int, np.ndarray] = {}
    n = 0
    try:
        while cap.grab():
            if n in wanted:
                ok, bgr = cap.retrieve()
                if not ok or bgr is None:
                    raise VideoError(f"frame {n} decoded but could not be retrieved")
                frames[n] = center_square(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size)
            n += 1
    finally:
        cap.release()
    return frames, n


def _decode_ffmpeg(path: str, needed: Iterable[int], size: int, width: int, height: int
                   ) -> Tuple[Dict[int, np.ndarray], Optional[int]]:
    import ffmpeg

    wanted = sorted(set(needed))
    expr = "+".join(f"eq(n,{i})" for i in wanted)  # ffmpeg-python escapes the commas
    stream = ffmpeg.input(os.path.abspath(path)).video.filter("select", expr)
    cmd = (stream.output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough")
           .global_args("-hide_banner", "-nostdin", "-loglevel", "error", "-threads", "1")
           .compile(cmd=find_ffmpeg()))
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise VideoError("ffmpeg timed out after 600 s") from None
    if out.returncode != 0:
        lines = out.stderr.decode("utf-8", "replace").strip().splitlines()
        raise VideoError(f"ffmpeg exit {out.returncode}: {lines[-1] if lines else 'no message'}")
    frame_bytes = width * height * 3
    got = len(out.stdout) // frame_bytes
    raw = np.frombuffer(out.stdout[:got * frame_bytes], np.uint8).reshape(got, height, width, 3)
    return {i: center_square(raw[k], size) for k, i in enumerate(wanted[:got])}, None


def count_decoded_frames(path: str) -> int:
    """Decode every frame with the ffmpeg binary and return how many there were (exact, slow; used on mismatch)."""
    cmd = [find_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-threads", "1", "-i",
           os.path.abspath(path), "-map", "0:v:0", "-f", "null", "-", "-progress", "pipe:1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    frames = [line.split("=", 1)[1] for line in out.stdout.splitlines() if line.startswith("frame=")]
    if out.returncode != 0 or not frames:
        lines = out.stderr.strip().splitlines()
        raise VideoError(f"ffmpeg cannot decode: {lines[-1] if lines else 'no frames'}")
    return int(frames[-1])


def decode_frames(path: str, needed: List[int], size: int, decoder: str = "opencv",
                  info: Optional[VideoInfo] = None) -> Tuple[Dict[int, np.ndarray], Optional[int]]:
    """Decode the frames numbered ``needed`` (0-based, decode order) as ``size`` x ``size`` RGB.

    Returns:
        ``(frames, decoded_count)``: frame number -> uint8 [size, size, 3]; ``decoded_count`` is the exact number of
        frames the decoder produced, or ``None`` when it cannot tell (the ``ffmpeg`` decoder only sees the frames
        its ``select`` filter passes; see :func:`count_decoded_frames`).

    Raises:
        VideoError: the file cannot be decoded.
    """
    try:
        if decoder == "opencv":
            return _decode_opencv(path, needed, size)
        if info is None:
            info = probe(path)
        return _decode_ffmpeg(path, needed, size, info.width, info.height)
    except VideoError:
        raise
    except Exception as err:  # noqa: BLE001 - decoder libraries raise many types
        raise VideoError(f"decode failed: {_one_line(err)}") from None
