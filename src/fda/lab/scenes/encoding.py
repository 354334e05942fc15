"""Encoding frames into video files with the ffmpeg binary, bit-exactly (the same frames always give the same bytes)."""

import os
import subprocess
import tempfile
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from fda.errors import ConfigError, EnvError
from fda.pipeline.video import find_ffmpeg

# Encoder arguments per container; -threads 1 and bitexact flags keep the bytes identical for a seed.
CODECS: Dict[str, List[str]] = {
    ".mp4": ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-threads", "1"],
    ".mkv": ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-threads", "1"],
    ".webm": ["-c:v", "libvpx-vp9", "-crf", "30", "-b:v", "0", "-deadline", "realtime", "-cpu-used", "8",
              "-pix_fmt", "yuv420p", "-threads", "1"],
    ".avi": ["-c:v", "libxvid", "-q:v", "3", "-pix_fmt", "yuv420p", "-threads", "1"],
}


def check_size(size: Tuple[int, int]) -> Tuple[int, int]:
    """``(width, height)`` as integers: even sides of at least 16 px (yuv420p).

    Raises:
        ConfigError: an odd or too small side.
    """
    w, h = int(size[0]), int(size[1])
    if w < 16 or h < 16 or w % 2 or h % 2:
        raise ConfigError(f"--size must be even WIDTHxHEIGHT of at least 16x16 (yuv420p), got {w}x{h}")
    return w, h


def frame_count(fps: float, seconds: float) -> int:
    """Frames in a clip of ``seconds`` at ``fps`` (at least 2, so that something can move)."""
    return max(2, int(round(fps * seconds)))


def encode_frames(path: str, frames: Iterable[np.ndarray], *, size: Tuple[int, int], fps: int,
                  crf: Optional[int] = None) -> int:
    """Encode uint8 [H, W, 3] RGB frames with the ffmpeg binary; the file appears only when complete.

    The encoder follows the extension: ``.mp4``/``.mkv`` libx264, ``.webm`` VP9, ``.avi`` Xvid, all yuv420p, with
    bit-exact flags so the same frames always give the same bytes. ``crf`` overrides the H.264/VP9 quality (higher
    is worse: 40 is heavy compression).

    Returns:
        The number of frames written.

    Raises:
        ConfigError: odd size or an extension with no encoder here.
        EnvError: no ffmpeg, or ffmpeg failed (the message holds its last stderr line).
    """
    w, h = check_size(size)
    ext = os.path.splitext(path)[1].lower()
    if ext not in CODECS:
        raise ConfigError(f"cannot encode {path}: use one of {', '.join(CODECS)}")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.part{ext}")
    codec = list(CODECS[ext])
    if crf is not None and "-crf" in codec:
        codec[codec.index("-crf") + 1] = str(int(crf))
    cmd = [find_ffmpeg(), "-y", "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", str(fps), "-i", "pipe:0", *codec, "-r", str(fps),
           "-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1", tmp]
    n = 0
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        try:
            for frame in frames:
                proc.stdin.write(np.ascontiguousarray(frame).tobytes())  # type: ignore[union-attr]
                n += 1
            proc.stdin.close()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass  # ffmpeg died; its return code and stderr say why
        finally:
            rc = proc.wait()
        if rc != 0:
            err.seek(0)
            lines = [ln for ln in err.read().decode("utf-8", "replace").splitlines() if ln.strip()]
            if os.path.exists(tmp):
                os.remove(tmp)
            raise EnvError(f"ffmpeg failed to encode {path} (exit {rc}): {lines[-1] if lines else 'no message'}")
    os.replace(tmp, path)
    return n
