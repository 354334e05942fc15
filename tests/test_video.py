"""The decoder: exact frames in presentation order, skipping equal to a full decode, upright, undistorted,
deinterlaced, and damaged files found out. Every clip is made by ffmpeg at test time."""

import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

from conftest import encode_video, index_frames
from fda.pipeline import video as video_mod
from fda.pipeline.sampling import needed_frames, partner_indices, sample_frame_indices
from fda.pipeline.video import (Video, VideoError, center_square, decode_frames, display_transform, orient, probe,
                                rotation_degrees)

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


def _run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, **kw)


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
def test_exact_frames_every_container(containers, name):
    path = containers[name]
    info = probe(path)
    assert info.num_packets == N
    wanted = [0, 1, 5, 13, 14, 27, 28]
    dec = decode_frames(path, wanted, 32, info)
    assert sorted(dec.frames) == wanted
    assert dec.frames[0].shape == (32, 32, 3) and dec.frames[0].dtype == np.uint8
    _assert_indices(dec.frames, wanted)
    full = decode_frames(path, wanted, 32, info, full=True)
    assert full.count == N and full.good == list(range(N)) and full.errors == 0


def test_timestamps_that_name_no_frame_fall_back_to_output_order(containers):
    import dataclasses

    path = containers["mp4-h264"]
    info = probe(path)
    shifted = dataclasses.replace(info, pts=tuple(p + 1 for p in info.pts))  # no decoded frame carries these
    wanted = [0, 7, 28]
    dec = decode_frames(path, wanted, 32, shifted)
    assert dec.full and dec.count == N and sorted(dec.frames) == wanted
    _assert_indices(dec.frames, wanted)


# Real-world-like encodes: moving content, B-frames (or alt-ref frames), a keyframe every 25 frames.
MOTION = "testsrc2=size=96x64:rate=25,format=yuv420p"
SKIP_CASES = {
    "h264-bframes.mp4": ("-c:v", "libx264", "-g", "25", "-bf", "3"),
    "h264-open-gop.mp4": ("-c:v", "libx264", "-g", "25", "-x264-params", "open-gop=1"),
    "hevc.mp4": ("-c:v", "libx265", "-g", "25", "-x265-params", "log-level=error", "-tag:v", "hvc1"),
    "vp9.webm": ("-c:v", "libvpx-vp9", "-g", "25", "-b:v", "200k"),
    "mpeg4-bframes.avi": ("-c:v", "mpeg4", "-g", "25", "-bf", "2", "-q:v", "3"),
    "h264.mkv": ("-c:v", "libx264", "-g", "25"),
    "vp8.webm": ("-c:v", "libvpx", "-g", "25", "-b:v", "200k"),
    "mpeg2.mpg": ("-c:v", "mpeg2video", "-g", "12", "-bf", "2", "-q:v", "3"),
    "h264-vfr.mp4": ("-vf", "setpts='(N/25+0.013*mod(N\\,4))/TB'", "-fps_mode", "vfr", "-c:v", "libx264",
                     "-g", "25"),
}


@pytest.fixture(scope="module")
def skip_clips(tmp_path_factory, ffmpeg_exe):
    root = tmp_path_factory.mktemp("skip")
    out = {}
    for name, args in SKIP_CASES.items():
        path = str(root / name)
        _run([ffmpeg_exe, "-y", "-loglevel", "error", "-f", "lavfi", "-i", MOTION, "-t", "6", *args, path])
        out[name] = path
    return out


@pytest.mark.parametrize("name", list(SKIP_CASES))
def test_skip_decoding_is_byte_identical_to_a_full_decode(skip_clips, name):
    path = skip_clips[name]
    info = probe(path)
    assert info.num_packets == 150
    for count in (6, 12):
        indices = sample_frame_indices(info.num_packets, count)
        needed = needed_frames(indices, partner_indices(indices, info.num_packets))
        fast = decode_frames(path, needed, 48, info)
        full = decode_frames(path, needed, 48, info, full=True)
        assert full.count == 150 and full.errors == 0
        if info.pts:  # AVI with reordered frames has no presentation timestamps: decoded in full
            assert not fast.full, "the skipping decode fell back to a full one"
        assert sorted(fast.frames) == sorted(full.frames) == needed
        for i in needed:
            assert np.array_equal(fast.frames[i], full.frames[i]), f"frame {i} differs"


def test_sequential_frames_are_distinct_and_in_order(skip_clips):
    # testsrc2 draws a moving pattern: consecutive frames differ, and a full decode's order is presentation order
    path = skip_clips["h264-bframes.mp4"]
    dec = decode_frames(path, range(0, 10), 48)
    diffs = [np.abs(dec.frames[i + 1].astype(int) - dec.frames[i]).mean() for i in range(9)]
    assert min(diffs) > 0


# ---------------------------------------------------------------- geometry

def _ffmpeg_rgb(ffmpeg, path, vf=None, frames=None):
    """Frames as ffmpeg's own decode shows them (autorotated), uint8 [N, H, W, 3]."""
    import av

    cmd = [ffmpeg, "-v", "error", "-i", path]
    if vf:
        cmd += ["-vf", vf]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-fps_mode", "passthrough", "-"]
    raw = _run(cmd).stdout
    probe_cmd = [ffmpeg, "-v", "error", "-i", path]
    if vf:
        probe_cmd += ["-vf", vf]
    probe_cmd += ["-frames:v", "1", "-f", "image2pipe", "-c:v", "png", "-"]
    png = _run(probe_cmd).stdout
    with av.open(__import__("io").BytesIO(png)) as c:
        s = c.streams.video[0]
        w, h = s.codec_context.width, s.codec_context.height
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="module")
def upright_source(tmp_path_factory, ffmpeg_exe):
    path = str(tmp_path_factory.mktemp("rot") / "src.mp4")
    _run([ffmpeg_exe, "-y", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10", "-t", "1",
          "-c:v", "libx264", "-crf", "10", "-pix_fmt", "yuv420p", path])
    return path


@pytest.mark.parametrize("rotation,flip", [(90, False), (180, False), (270, False), (90, True), (0, True)])
def test_rotated_video_is_upright_like_ffmpeg_shows_it(upright_source, ffmpeg_exe, rotation, flip, tmp_path):
    path = str(tmp_path / f"r{rotation}{'f' if flip else ''}.mp4")
    _run([ffmpeg_exe, "-y", "-loglevel", "error", "-display_rotation", str(rotation),
          *(["-display_hflip"] if flip else []), "-i", upright_source, "-c", "copy", path])
    ref = _ffmpeg_rgb(ffmpeg_exe, path)
    assert ref.shape[1:3] == ((96, 64) if rotation % 180 == 90 else (64, 96))
    dec = decode_frames(path, [0, 5], 48)
    assert dec.rotation == rotation and dec.flip == flip
    for i in (0, 5):
        right = _psnr(dec.frames[i], center_square(ref[i], 48))
        wrong = max(_psnr(dec.frames[i], np.rot90(center_square(ref[i], 48), k)) for k in (1, 2, 3))
        assert right > 27 and wrong < right - 10, (right, wrong)  # 96x64 test pattern: sharp colour edges


def test_display_matrix_arithmetic():
    image = np.arange(6, dtype=np.uint8).reshape(2, 3, 1)
    # FFmpeg's matrix for -display_rotation 90 (counter-clockwise): a=0, b=-1, c=1, d=0
    m90 = (0, -65536, 0, 65536, 0, 0, 0, 0, 1 << 30)
    assert rotation_degrees(m90) == 90
    assert orient(image, display_transform(m90))[..., 0].tolist() == [[2, 5], [1, 4], [0, 3]]
    assert display_transform(None) == (False, False, False)


def test_sar_two_to_one_gets_the_display_aspect(ffmpeg_exe, tmp_path):
    # Stored 64x96 with 2:1 pixels: a 24x48 stored block is a 48x48 square on screen.
    frames = np.zeros((6, 96, 64, 3), np.uint8)
    frames[:, 24:72, 20:44] = 255
    path = encode_video(ffmpeg_exe, str(tmp_path / "sar.mp4"), frames, vf="setsar=2/1", extra=("-crf", "4"))
    info = probe(path)
    assert info.sar == Fraction(2) and (info.width, info.height) == (64, 96)
    dec = decode_frames(path, [0, 3], 48, info)
    assert dec.sar == Fraction(2)
    for i in (0, 3):
        rows, cols = np.nonzero(dec.frames[i][..., 0] > 128)
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert abs(height - 24) <= 1 and abs(width - 24) <= 1, (height, width)  # half of the 96x96 display crop


def test_center_crop_keeps_the_middle(tmp_path, ffmpeg_exe):
    frames = np.zeros((4, 40, 80, 3), np.uint8)
    frames[:, :, 20:60] = 200  # the central 40x40 square is bright, the sides dark
    path = encode_video(ffmpeg_exe, str(tmp_path / "wide.mp4"), frames, extra=("-crf", "4"))
    out = decode_frames(path, [0], 40).frames
    assert out[0].shape == (40, 40, 3) and out[0].mean() > 180


def test_center_square_in_display_geometry():
    frame = np.zeros((60, 40, 3), np.uint8)
    frame[:, 10:30] = 255  # with SAR 3:1 the display is 120x60; its central 60x60 square is stored columns 10..30
    out = center_square(frame, 30, Fraction(3))
    assert out.shape == (30, 30, 3) and out.min() == 255


@pytest.mark.parametrize("pix_fmt", ["yuv420p10le", "gray", "yuva420p", "yuvj444p"])
def test_any_pixel_format_to_rgb(ffmpeg_exe, tmp_path, pix_fmt):
    codec = ("-c:v", "libvpx-vp9") if pix_fmt == "yuva420p" else ("-c:v", "libx264")
    if pix_fmt == "gray":
        codec = ("-c:v", "ffv1")
    path = str(tmp_path / ("x.webm" if pix_fmt == "yuva420p" else "x.mkv"))
    _run([ffmpeg_exe, "-y", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-t", "1",
          "-pix_fmt", pix_fmt, *codec, path])
    dec = decode_frames(path, [0, 9], 32)
    ref = _ffmpeg_rgb(ffmpeg_exe, path)
    for i in (0, 9):
        assert dec.frames[i].shape == (32, 32, 3)
        assert _psnr(dec.frames[i], center_square(ref[i], 32)) > 30


# ---------------------------------------------------------------- interlacing

INTERLACE = "scale=352:288,tinterlace=interleave_top,setfield=tff"


@pytest.fixture(scope="module")
def interlaced(tmp_path_factory, ffmpeg_exe):
    root = tmp_path_factory.mktemp("interlaced")
    src = ["-f", "lavfi", "-i", "testsrc2=size=352x288:rate=50", "-t", "1.2", "-vf", INTERLACE]
    out = {"mpeg2": str(root / "i.mpg"), "h264": str(root / "i.mp4")}
    _run([ffmpeg_exe, "-y", "-loglevel", "error", *src, "-flags", "+ilme+ildct", "-c:v", "mpeg2video", "-q:v", "2",
          out["mpeg2"]])
    _run([ffmpeg_exe, "-y", "-loglevel", "error", *src, "-flags", "+ilme+ildct", "-c:v", "libx264", "-crf", "12",
          "-x264-params", "tff=1", "-pix_fmt", "yuv420p", out["h264"]])
    return out


@pytest.mark.parametrize("name", ["mpeg2", "h264"])
def test_interlaced_frames_match_a_deinterlaced_reference(interlaced, ffmpeg_exe, name):
    path = interlaced[name]
    info = probe(path)
    ref = _ffmpeg_rgb(ffmpeg_exe, path, vf="yadif=mode=send_frame:parity=auto:deint=all")
    assert len(ref) == info.num_packets
    indices = sample_frame_indices(info.num_packets, 6)
    needed = needed_frames(indices, partner_indices(indices, info.num_packets))
    dec = decode_frames(path, needed, 96, info)
    assert dec.deinterlaced == len(needed)
    for i in needed:
        assert _psnr(dec.frames[i], center_square(ref[i], 96)) >= 30, f"frame {i}"
    # the skipping decode deinterlaces each frame with the same neighbours a full pass gives it
    full = decode_frames(path, needed, 96, info, full=True)
    for i in needed:
        assert np.array_equal(dec.frames[i], full.frames[i])


def test_no_swscaler_warning_on_interlaced_input(interlaced):
    code = ("import sys; from fda.pipeline.video import decode_frames; "
            "d = decode_frames(sys.argv[1], [3, 4, 20], 64); assert d.deinterlaced == 3")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for path in interlaced.values():
        out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        assert "swscaler" not in out.stderr and "interlaced" not in out.stderr.lower(), out.stderr


# ---------------------------------------------------------------- damaged files

@pytest.fixture(scope="module")
def damaged(tmp_path_factory, ffmpeg_exe):
    root = tmp_path_factory.mktemp("damaged")
    good = str(root / "good.mp4")
    _run([ffmpeg_exe, "-y", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-t", "8",
          "-c:v", "libx264", "-g", "50", "-pix_fmt", "yuv420p", "-movflags", "+faststart", good])
    data = open(good, "rb").read()
    out = {"good": good}
    for name, cut in (("corrupt", 0.2), ("nick", 0.01)):
        damaged_bytes = bytearray(data)
        middle, span = len(data) // 2, int(len(data) * cut)
        damaged_bytes[middle:middle + span] = bytes(span)
        out[name] = str(root / f"{name}.mp4")
        open(out[name], "wb").write(bytes(damaged_bytes))
    out["truncated"] = str(root / "truncated.mp4")
    open(out["truncated"], "wb").write(data[:len(data) // 2])
    return out


def test_damage_is_counted_by_a_full_decode(damaged):
    good = decode_frames(damaged["good"], [0, 100], 32, full=True)
    assert good.count == 200 and good.errors == 0
    corrupt = decode_frames(damaged["corrupt"], [0, 100], 32)
    assert corrupt.full and corrupt.errors > 0 and len(corrupt.good) < 0.95 * 200
    info = probe(damaged["truncated"])
    assert info.declared_frames == 200 and info.num_packets < 120 and info.present < 0.6


@pytest.mark.parametrize("content,reason", [(b"", "empty file"), (b"not a video at all\n" * 20, "cannot open")])
def test_unreadable_files_give_a_reason(tmp_path, content, reason):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoError, match=reason):
        probe(str(path))


def test_audio_only_has_no_video_stream(tmp_path, ffmpeg_exe):
    path = str(tmp_path / "audio.mp4")
    subprocess.run([ffmpeg_exe, "-y", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
                    "-c:a", "aac", path], check=True)
    with pytest.raises(VideoError, match="no video stream"):
        probe(path)


def test_missing_file(tmp_path):
    with pytest.raises(VideoError, match="not found"):
        probe(str(tmp_path / "nope.mp4"))
    assert not os.path.exists(tmp_path / "nope.mp4")


@pytest.mark.parametrize("cache", ["memory", "rewind"])
@pytest.mark.parametrize("name", list(SKIP_CASES))
def test_an_open_video_is_decoded_from_the_file_it_probed(skip_clips, name, cache, monkeypatch):
    # The first pass reads the packets the probe kept (or, for a file over the cache size, rewinds the probed
    # container): no second open, and the same frames as a decode of a freshly opened file.
    if cache == "rewind":
        monkeypatch.setattr(video_mod, "PACKET_CACHE_BYTES", 1000)
    path = skip_clips[name]
    info = probe(path)
    indices = sample_frame_indices(info.num_packets, 12)
    needed = needed_frames(indices, partner_indices(indices, info.num_packets))
    full = decode_frames(path, needed, 48, info, full=True)
    with Video(path) as video:
        assert video.info == info
        dec = video.decode(needed, 48)
        assert video.opens == 1, "the first decode pass opened the file again"
        assert video.passes == [cache]
        again = video.decode(needed, 48, full=True)  # a later pass opens the file afresh
        assert video.opens == 2 and video.passes == [cache, "open"]
    for got in (dec, again):
        assert sorted(got.frames) == needed
        for i in needed:
            assert np.array_equal(got.frames[i], full.frames[i]), f"frame {i} differs"


# ---------------------------------------------------------------- no false alarms


def test_well_formed_clips_have_no_damage_record(containers, skip_clips, interlaced, damaged):
    # every clip the decoder tests call well-formed: no hole, tail, taint, demuxer complaint or length note
    from fda.lab.damage import damage_recorded, suite_config
    from fda.pipeline.datasets import VideoItem
    from fda.pipeline.clips import decode_clip

    clips = {**containers, **skip_clips, **{f"interlaced-{k}": v for k, v in interlaced.items()},
             "good.mp4": damaged["good"]}
    for name, path in clips.items():
        info = probe(path)
        assert (info.holes, info.tail_frames, info.demux_damage, info.damaged_packets, info.unnumbered) == \
            ((), 0, None, (), None), name
        for split in ("train", "test"):
            meta = decode_clip(VideoItem("v", split, path, ("c",), name), suite_config(size=32)).meta
            assert not damage_recorded(meta), (name, meta)
