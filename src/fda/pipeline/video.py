"""The only place that opens videos: finding ffmpeg, counting frames, decoding the needed ones.

Placeholder during bootstrapping; filled in by the preprocess work.
"""

import os
import shutil

from fda.errors import EnvError


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
