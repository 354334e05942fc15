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
