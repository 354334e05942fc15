"""Shared fixtures: synthetic videos made by ffmpeg at test time (no media in git, no network)."""

import os
import subprocess

import pytest


@pytest.fixture(scope="session")
def ffmpeg_exe() -> str:
    """The ffmpeg binary fda itself uses."""
    from fda.pipeline.video import find_ffmpeg

    return find_ffmpeg()


@pytest.fixture(scope="session")
def tiny_video(tmp_path_factory, ffmpeg_exe) -> str:
    """A 2 s, 8 fps, 64x48 H.264 test pattern (16 frames)."""
    path = str(tmp_path_factory.mktemp("videos") / "tiny.mp4")
    subprocess.run([ffmpeg_exe, "-y", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=8",
                    "-t", "2", "-pix_fmt", "yuv420p", path], check=True)
    return path


@pytest.fixture
def test_device() -> str:
    """Device for tests that can use one: FDA_TEST_DEVICE, CPU by default."""
    return os.environ.get("FDA_TEST_DEVICE", "cpu")


def encode_video(ffmpeg: str, path: str, frames, fps: float = 10, codec: str = "libx264", extra=(),
                 vf: str = "") -> str:
    """Encode uint8 [N, H, W, 3] RGB frames into ``path`` with the ffmpeg binary (rawvideo on stdin)."""
    n, h, w, _ = frames.shape
    cmd = [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-r", str(fps), "-i", "pipe:0"]
    if vf:
        cmd += ["-vf", vf]
    cmd += ["-c:v", codec, *extra, path]
    if codec in ("libx264", "mpeg4"):
        cmd[-1:-1] = ["-pix_fmt", "yuv420p"]
    subprocess.run(cmd, input=frames.tobytes(), check=True)
    return path


def index_frames(n: int, h: int = 48, w: int = 64):
    """Frames whose grey level tells their index (frame i is filled with 8 * i + 4): decoded order is checkable."""
    import numpy as np

    values = (np.arange(n) * 8 + 4).astype(np.uint8)
    return np.broadcast_to(values[:, None, None, None], (n, h, w, 3)).copy()


@pytest.fixture(scope="session")
def eval_shards(tmp_path_factory) -> str:
    """A tiny synthetic MSR-VTT shard set: test = 6 videos x 1 caption (4 frames), train = 3 videos x 5 captions."""
    from fda.config import PreprocessConfig
    from fda.pipeline.preprocess import run_preprocess
    from fda.lab.scenes import make_msrvtt_demo

    root = tmp_path_factory.mktemp("eval_data")
    make_msrvtt_demo(str(root / "data"), n_train=3, n_test=6, size=(64, 48), seconds=1)
    out = str(root / "shards")
    run_preprocess(PreprocessConfig(str(root / "data"), out=out, size=32, frames_train=2, frames_test=4, workers=1))
    return out
