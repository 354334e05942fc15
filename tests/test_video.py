"""Decoding returns exactly the requested frames on the containers where seeking and metadata lie."""

import os

import numpy as np
import pytest

from conftest import encode_video, index_frames
from fda.pipeline.video import VideoError, count_decoded_frames, decode_frames, probe

N = 29  # grey level 8 * i + 4 fits in uint8


def _assert_indices(frames, wanted):
    for i in wanted:
        level = frames[i][..., 0].mean()
        assert abs(level - (8 * i + 4)) < 3.5, f"frame {i} has level {level:.1f}, expected {8 * i + 4}"


CONTAINERS = {
    "mp4-h264": ("x.mp4", "libx264", (), ""),
    # variable frame rate: irregular timestamps, no frame duplicated or dropped
    "mp4-vfr": ("x.mp4", "libx264", ("-fps_mode", "vfr"), "setpts='(N*0.1+0.07*mod(N\\,3))/TB'"),
    "avi-h264": ("x.avi", "libx264", (), ""),
    "avi-xvid": ("x.avi", "mpeg4", ("-vtag", "xvid"), ""),
    "mkv-h264": ("x.mkv", "libx264", (), ""),
    "webm-vp9": ("x.webm", "libvpx-vp9", ("-b:v", "0", "-crf", "10"), ""),
}


@pytest.fixture(scope="module")
def containers(tmp_path_factory, ffmpeg_exe):
    root = tmp_path_factory.mktemp("containers")
    out = {}
    for name, (fname, codec, extra, vf) in CONTAINERS.items():
        path = str(root / f"{name}-{fname}")
        quality = ("-crf", "4") if codec == "libx264" else (("-q:v", "1") if codec == "mpeg4" else ())
        out[name] = encode_video(ffmpeg_exe, path, index_frames(N), fps=10, codec=codec, extra=(*quality, *extra),
                                 vf=vf)
    return out


@pytest.mark.parametrize("name", list(CONTAINERS))
@pytest.mark.parametrize("decoder", ["opencv", "ffmpeg"])
def test_exact_frames_every_container(containers, name, decoder):
    path = containers[name]
    info = probe(path)
    assert info.num_packets == N
    wanted = [0, 1, 5, 13, 14, 27, 28]
    frames, count = decode_frames(path, wanted, 32, decoder, info)
    assert sorted(frames) == wanted
    assert frames[0].shape == (32, 32, 3) and frames[0].dtype == np.uint8
    if decoder == "opencv":
        assert count == N
    _assert_indices(frames, wanted)


def test_count_decoded_frames_matches(containers):
    assert count_decoded_frames(containers["avi-h264"]) == N


def test_center_crop_keeps_the_middle(tmp_path, ffmpeg_exe):
    frames = np.zeros((4, 40, 80, 3), np.uint8)
    frames[:, :, 20:60] = 200  # the central 40x40 square is bright, the sides dark
    path = encode_video(ffmpeg_exe, str(tmp_path / "wide.mp4"), frames, extra=("-crf", "4"))
    out, _ = decode_frames(path, [0], 40)
    assert out[0].shape == (40, 40, 3) and out[0].mean() > 180


@pytest.mark.parametrize("content,reason", [(b"", "empty file"), (b"not a video at all\n" * 20, "cannot open")])
def test_unreadable_files_give_a_reason(tmp_path, content, reason):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoError, match=reason):
        probe(str(path))


def test_audio_only_has_no_video_stream(tmp_path, ffmpeg_exe):
    import subprocess

    path = str(tmp_path / "audio.mp4")
    subprocess.run([ffmpeg_exe, "-y", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
                    "-c:a", "aac", path], check=True)
    with pytest.raises(VideoError, match="no video stream"):
        probe(path)


def test_missing_file(tmp_path):
    with pytest.raises(VideoError, match="not found"):
        probe(str(tmp_path / "nope.mp4"))
    assert not os.path.exists(tmp_path / "nope.mp4")
