"""Damaged video: never a silently wrong frame. Lost frames are found wherever they go missing (a truncated
Matroska file with audio, a hole in the timestamps, a cut tail), damage that spreads is charged to every frame it
reaches, a hung decode is a recorded failure, and the damage suite (``fda.lab.damage``) holds on every container.
Every clip is made by ffmpeg at test time."""

import json
import os
import subprocess

import av
import numpy as np
import pytest

from fda.lab.damage import MUTANT_KINDS, judge, mutants, suite_config
from fda.pipeline.datasets import VideoItem
from fda.pipeline.clips import decode_clip
from fda.pipeline.preprocess import run_preprocess
from fda.pipeline.video import length_note
from fda.pipeline.video import VideoError, decode_frames, probe

VIDEO = ("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25")
AUDIO = ("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000")


def _encode(ffmpeg, path, seconds, *args, audio=False):
    subprocess.run([ffmpeg, "-y", "-loglevel", "error", *VIDEO, *(AUDIO if audio else ()), "-t", str(seconds),
                    *args, path], check=True)
    return path


H264 = ("-c:v", "libx264", "-pix_fmt", "yuv420p")
VP9 = ("-c:v", "libvpx-vp9", "-b:v", "200k")


@pytest.fixture(scope="session")
def clips(tmp_path_factory, ffmpeg_exe):
    """Undamaged clips, 25 fps, 96x64, made once per session."""
    root = tmp_path_factory.mktemp("damage_clips")
    out = {}
    out["webm-opus"] = _encode(ffmpeg_exe, str(root / "vp9-opus.webm"), 4, *VP9, "-g", "25", "-c:a", "libopus",
                               audio=True)
    out["mkv-aac51"] = _encode(ffmpeg_exe, str(root / "h264-aac51.mkv"), 4, *H264, "-g", "25", "-c:a", "aac",
                               "-ac", "6", audio=True)
    out["vp9-mkv"] = _encode(ffmpeg_exe, str(root / "vp9.mkv"), 6, *VP9, "-g", "25")
    out["one-idr"] = _encode(ffmpeg_exe, str(root / "one-idr.mp4"), 4, *H264, "-g", "1000")
    out["gops"] = _encode(ffmpeg_exe, str(root / "gops.mp4"), 4, *H264, "-g", "25", "-bf", "0")
    return out


def _cut(src, dst, fraction):
    data = open(src, "rb").read()
    open(dst, "wb").write(data[:int(len(data) * fraction)])
    return dst


def _item(path, video_id="clip"):
    return VideoItem(video_id, "test", path, ("a caption",), os.path.basename(path))


def _packets(path):
    with av.open(path) as container:
        stream = container.streams.video[0]
        return [(p.pos, p.size, p.pts, p.is_keyframe) for p in container.demux(stream) if p.size]


def _zero_in_packet(src, dst, number):
    """Zero the second half of video packet ``number`` (decode order): damage the codec notices. (Not every damage
    is noticed: some flipped bytes decode to another valid picture, and nothing in an MP4 can tell.)"""
    pos, size, _, _ = _packets(src)[number]
    data = bytearray(open(src, "rb").read())
    data[pos + size // 2:pos + size] = bytes(size - size // 2)
    open(dst, "wb").write(bytes(data))
    return dst


def _assert_consistent(meta):
    """num_frames, fps and duration agree within a frame, or the json says why."""
    frame = 1 / meta["fps"]
    assert abs(meta["num_frames"] * frame - meta["duration"]) <= frame * 1.01 or meta.get("length_note"), meta


# ---------------------------------------------------------------- the video stream's own length


@pytest.mark.parametrize("name", ["webm-opus", "mkv-aac51"])
def test_a_truncated_matroska_file_with_audio_is_not_a_whole_clip(clips, name, tmp_path):
    cut = _cut(clips[name], str(tmp_path / f"cut{os.path.splitext(clips[name])[1]}"), 0.4)
    with pytest.raises(VideoError, match=r"^truncated file: it holds \d+ of its 100 frames \(--min-decodable 0.95\)"):
        decode_clip(_item(cut), suite_config())
    clip = decode_clip(_item(cut), suite_config(min_decodable=0.2))  # accepted when asked: recorded, consistent
    meta = clip.meta
    assert meta["num_frames"] + meta["truncated_frames"] == 100 and meta["truncated_frames"] >= 40
    assert meta["frames_lost"] >= meta["truncated_frames"] and max(meta["indices"]) < meta["num_frames"]
    assert meta["length_note"].startswith("truncated: the video stream ends")
    _assert_consistent(meta)


def test_a_cut_matroska_tail_is_recorded_as_truncated(clips, tmp_path):
    cut = _cut(clips["vp9-mkv"], str(tmp_path / "tail.mkv"), 0.977)
    meta = decode_clip(_item(cut), suite_config()).meta  # above --min-decodable: a sample, with its loss recorded
    assert meta["truncated_frames"] == 150 - meta["num_frames"] > 0
    assert meta["frames_lost"] == meta["truncated_frames"]
    info = probe(cut)
    assert 0.95 <= info.present < 1 and info.tail_frames == meta["truncated_frames"]
    _assert_consistent(meta)


def test_no_audio_duration_dates_the_video(clips):
    # the container's duration (4.0xx s) is the audio's; the video stream's own (Matroska's DURATION tag) is 4.0 s
    for name in ("webm-opus", "mkv-aac51"):
        info = probe(clips[name])
        assert info.num_frames == info.expected_frames == 100 and info.tail_frames == 0 and info.present == 1.0
        meta = decode_clip(_item(clips[name]), suite_config()).meta
        assert meta["frames_lost"] == meta["truncated_frames"] == 0 and "length_note" not in meta


# ---------------------------------------------------------------- holes in the timestamps


def _zero_middle(src, dst, fraction=0.12):
    data = bytearray(open(src, "rb").read())
    middle, span = len(data) // 2, int(len(data) * fraction)
    data[middle:middle + span] = bytes(span)
    open(dst, "wb").write(bytes(data))
    return dst


def test_frames_missing_mid_matroska_keep_their_numbers(clips, tmp_path):
    damaged = _zero_middle(clips["vp9-mkv"], str(tmp_path / "zeroed.mkv"))
    with pytest.raises(VideoError, match=r"missing in timestamp holes; --min-decodable 0.95\)"):
        decode_clip(_item(damaged), suite_config())
    clip = decode_clip(_item(damaged), suite_config(min_decodable=0.5))
    meta = clip.meta
    lost = {i for a, b in meta["lost_at"] for i in range(a, b + 1)}
    assert meta["num_frames"] == 150 and meta["frames_lost"] == len(lost) > 0
    assert meta["holes"] and not lost & set(meta["indices"] + meta["partners"])
    assert max(meta["indices"]) > max(lost), "no frame after the hole was sampled"
    # an index after the hole names the frame an undamaged decode calls by that number
    ref = decode_frames(clips["vp9-mkv"], meta["indices"], 32, full=True).frames
    for k, i in enumerate(meta["indices"]):
        assert np.array_equal(clip.frames[k], ref[i]), f"stored frame {k} is not frame {i}"
    _assert_consistent(meta)
    info = probe(damaged)
    assert info.holes and info.num_packets == 150 - len(lost) and info.num_frames == 150


def test_a_gap_in_a_well_formed_file_is_not_a_hole(ffmpeg_exe, tmp_path):
    # an encoder's own gap (two frame intervals, no frame lost) in an undamaged file: frames are numbered as decoded
    path = _encode(ffmpeg_exe, str(tmp_path / "gap.mkv"), 2, "-vf", "setpts='(N+gt(N\\,20))/25/TB'", "-fps_mode", "vfr",
                   *H264)
    info = probe(path)
    assert np.diff(np.sort(info.pts)).max() > 1.9 * np.median(np.diff(np.sort(info.pts)))
    assert info.holes == () and info.num_frames == info.num_packets and info.tail_frames == 0


# ---------------------------------------------------------------- damage that spreads


def test_damage_in_the_only_idr_taints_the_whole_clip(clips, tmp_path):
    damaged = _zero_in_packet(clips["one-idr"], str(tmp_path / "idr.mp4"), 0)
    with pytest.raises(VideoError, match=r"decoded from a damaged reference; --min-decodable 0.95\)"):
        decode_clip(_item(damaged), suite_config())
    meta = decode_clip(_item(damaged), suite_config(min_decodable=0.0)).meta
    assert meta["tainted_frames"] + meta["frames_lost"] == 100 and meta["tainted"] == list(range(12))


def test_tainted_frames_are_marked_and_can_be_skipped(clips, tmp_path):
    packets = _packets(clips["gops"])
    keys = [q for q, p in enumerate(packets) if p[3]]
    assert keys[:3] == [0, 25, 50]
    damaged = _zero_in_packet(clips["gops"], str(tmp_path / "gop.mp4"), 26)  # the second GOP's first P frame
    marked = decode_clip(_item(damaged), suite_config(min_decodable=0.5)).meta
    assert marked["lost_at"] == [[26, 26]] and marked["tainted_at"] == [[27, 49]] and marked["tainted"]
    dec = decode_frames(damaged, range(100), 32, full=True)
    assert dec.tainted == list(range(27, 50)) and 26 not in dec.frames  # lost, and the rest of its GOP tainted
    ref = decode_frames(clips["gops"], range(100), 32, full=True).frames
    assert [i for i in dec.frames if not np.array_equal(dec.frames[i], ref[i])] == dec.tainted
    bad = {i for a, b in marked["tainted_at"] for i in range(a, b + 1)}
    assert marked["tainted"] == [k for k, i in enumerate(marked["indices"]) if i in bad]
    assert marked["tainted_partners"] == [k for k, i in enumerate(marked["partners"]) if i in bad]
    skipped = decode_clip(_item(damaged), suite_config(min_decodable=0.5, skip_damaged_frames=True)).meta
    assert not bad & set(skipped["indices"] + skipped["partners"])
    assert "tainted" in skipped and skipped["tainted"] == [] and skipped["tainted_partners"] == []


def test_taint_runs_to_the_next_clean_restart_and_its_leading_pictures():
    from fda.pipeline.video import taint

    assert taint([3], [0, 5, 10], 12) == [3, 4]
    assert taint([7, 11], [0, 5, 10], 12) == [7, 8, 9, 11]
    # decode order 5 is a restart shown at rank 6; decode 6 (rank 5) leads it and may reference the damaged group
    ranks = np.array([0, 2, 1, 3, 4, 6, 5, 7, 8, 9])
    assert taint([3], [0, 5], 10, ranks) == [3, 4, 6]


def test_skip_damaged_frames_is_a_recorded_data_option(tmp_path):
    cfg = suite_config()
    assert "skip_damaged_frames" not in cfg.data_fields()  # off: shard sets written before it keep their fingerprint
    assert suite_config(skip_damaged_frames=True).data_fields()["skip_damaged_frames"] is True


# ---------------------------------------------------------------- the damage suite

SOURCES = {
    "mp4": ("mp4", H264),
    "mp4-audio": ("mp4", H264 + ("-c:a", "aac")),
    "mkv": ("mkv", H264),
    "mkv-audio": ("mkv", H264 + ("-c:a", "aac")),
    "webm": ("webm", VP9),
    "webm-audio": ("webm", VP9 + ("-c:a", "libopus")),
    "avi": ("avi", ("-c:v", "mpeg4", "-q:v", "3")),
    "avi-audio": ("avi", ("-c:v", "mpeg4", "-q:v", "3", "-c:a", "pcm_s16le")),
}

KNOWN_SILENT = {
    # Neither the container nor the codec can tell: VP9 has no error detection in its coded data and WebM no
    # checksums, so flipped bytes decode to other pictures; likewise flipped bytes that MPEG-4 part 2 decodes
    # without a complaint in an AVI (no checksums either).
    ("webm", "flip-start"), ("webm", "flip-middle"), ("webm", "flip-end"),
    ("webm-audio", "flip-start"), ("webm-audio", "flip-middle"), ("webm-audio", "flip-end"),
    ("avi-audio", "flip-start"),
}
"""Damaged copies that still give an unmarked wrong frame (docs/DAMAGE.md, "What stays silent")."""


@pytest.fixture(scope="session")
def suite(tmp_path_factory, ffmpeg_exe):
    """Every source clip (2 s, two GOPs) and its damaged copies, judged once per session:
    ``{(source, kind): Verdict}`` (kind ``undamaged`` for the clip itself)."""
    root = tmp_path_factory.mktemp("damage_suite")
    cfg = suite_config()
    verdicts = {}
    for name, (ext, args) in SOURCES.items():
        src = _encode(ffmpeg_exe, str(root / f"{name}.{ext}"), 2, *args, "-g", "25", audio="-c:a" in args)
        verdicts[name, "undamaged"] = judge(src, src, cfg)
        for kind, path in mutants(src, str(root), seed=0):
            verdicts[name, kind] = judge(path, src, cfg, joined=kind == "joined")
    return verdicts


def test_undamaged_clips_have_no_damage_record(suite):
    for name in SOURCES:
        verdict = suite[name, "undamaged"]
        assert verdict.outcome == "clean", (name, verdict)


def test_every_mutant_is_a_failure_a_faithful_sample_or_recorded_damage(suite):
    wrong = {key: v.detail for key, v in suite.items() if v.outcome == "wrong" and key not in KNOWN_SILENT}
    assert not wrong, wrong
    assert {kind for _, kind in suite} == set(MUTANT_KINDS) | {"undamaged"}


def test_known_silent_cases_are_still_silent(suite):
    # when one of these gets caught, move it out of KNOWN_SILENT (and docs/DAMAGE.md)
    fixed = sorted(key for key in KNOWN_SILENT if suite[key].outcome != "wrong")
    assert not fixed, fixed


def test_every_sample_json_agrees_with_itself(suite):
    for key, verdict in suite.items():
        if verdict.meta is not None:
            _assert_consistent(verdict.meta)


def test_mutants_are_reproducible(tmp_path, clips):
    first = dict(mutants(clips["gops"], str(tmp_path), seed=3))
    data = {kind: open(path, "rb").read() for kind, path in first.items()}
    again = dict(mutants(clips["gops"], str(tmp_path), seed=3))
    assert all(open(again[kind], "rb").read() == data[kind] for kind in data)


def test_length_note_names_a_declared_duration_the_stream_does_not_reach(clips):
    info = probe(clips["gops"])
    assert length_note(info, info.num_frames, 0) is None
    assert "truncated" in length_note(info, info.num_frames - 10, 10)


# ---------------------------------------------------------------- a hang is a failure


@pytest.mark.parametrize("workers", [1, 2])
def test_a_hung_video_times_out_and_the_run_goes_on(clips, tmp_path, workers, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    for name in ("a", "hang", "b"):
        (root / f"{name}.mp4").write_bytes(open(clips["gops"], "rb").read())
    (root / "captions.csv").write_text("video,caption\na.mp4,one\nhang.mp4,two\nb.mp4,three\n")
    monkeypatch.setenv("FDA_TEST_HANG", "hang.mp4")
    from fda.config import PreprocessConfig

    result = run_preprocess(PreprocessConfig(str(root), out=str(tmp_path / "out"), size=32, workers=workers,
                                             video_timeout=1.5, max_failure_rate=1.0))
    (failure,) = result.manifest["failures"]
    assert failure["video_id"] == "hang" and failure["error"].startswith("timed out after 1.5 s (--video-timeout)")
    (split,) = result.manifest["splits"].values()
    assert split["videos"] == 2
    stats = json.load(open(next(str(p) for p in (tmp_path / "out").glob("*.stats.json"))))
    assert [v["status"] for v in stats["videos"]] == ["ok", "timed out", "ok"]


def test_a_worker_that_dies_is_a_recorded_failure(clips, tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    for name in ("a", "crash", "b", "c"):
        (root / f"{name}.mp4").write_bytes(open(clips["gops"], "rb").read())
    (root / "captions.csv").write_text("video,caption\na.mp4,one\ncrash.mp4,two\nb.mp4,three\nc.mp4,four\n")
    monkeypatch.setenv("FDA_TEST_CRASH", "crash.mp4")
    from fda.config import PreprocessConfig

    result = run_preprocess(PreprocessConfig(str(root), out=str(tmp_path / "out"), size=32, workers=2,
                                             max_failure_rate=1.0))
    (failure,) = result.manifest["failures"]
    assert failure["video_id"] == "crash" and failure["error"].startswith("the worker process decoding it died")
    (split,) = result.manifest["splits"].values()
    assert split["videos"] == 3
