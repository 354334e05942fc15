"""``fda preprocess`` end to end on clips made by ffmpeg at test time."""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import encode_video
from fda.cli import cli
from fda.config import MaskConfig, PreprocessConfig
from fda.errors import ConfigError, InputError
from fda.pipeline.preprocess import run_preprocess
from fda.shards.reader import decode_sample

SIZE = 64


def moving_square_frames(n=12, size=SIZE, step=4, side=12, seed=0):
    """A white square moving ``step`` px right per frame over a static, blocky textured background."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 160, (size // 8, size // 8, 3), dtype=np.uint8)
    bg = np.kron(blocks, np.ones((8, 8, 1), np.uint8))
    frames = np.repeat(bg[None], n, axis=0)
    for i in range(n):
        x = 4 + step * i
        frames[i, 26:26 + side, x:x + side] = 255
    return frames


def static_frames(n=12, size=SIZE, seed=1):
    return moving_square_frames(n, size, step=0, seed=seed)


def write_msrvtt(root, videos, train, test, captions=None):
    """An MSR-VTT layout in the official formats: ``videos`` maps id -> frames array (None: no file)."""
    os.makedirs(os.path.join(root, "videos", "all"), exist_ok=True)
    ids = list(dict.fromkeys(list(train) + list(test)))
    captions = captions or {}
    sentences = [{"caption": c, "video_id": v, "sen_id": j}
                 for v in ids for j, c in enumerate(captions.get(v, [f"clip {v} caption {k}" for k in range(2)]))]
    with open(os.path.join(root, "MSRVTT_data.json"), "w") as f:
        json.dump({"info": {}, "videos": [{"video_id": v, "split": "train", "id": i} for i, v in enumerate(ids)],
                   "sentences": sentences}, f)
    with open(os.path.join(root, "MSRVTT_train.9k.csv"), "w") as f:
        f.write("video_id\n" + "".join(f"{v}\n" for v in train))
    with open(os.path.join(root, "MSRVTT_JSFUSION_test.csv"), "w") as f:
        f.write("key,vid_key,video_id,sentence\n")
        f.write("".join(f"ret{i},msr{i},{v},a sentence about {v}\n" for i, v in enumerate(test)))
    return root


@pytest.fixture(scope="module")
def motion_root(tmp_path_factory, ffmpeg_exe):
    root = str(tmp_path_factory.mktemp("msrvtt"))
    write_msrvtt(root, None, train=["video0", "video1", "video2", "video3"], test=["video4", "video5"])
    for i in range(6):
        frames = moving_square_frames(seed=i) if i % 2 == 0 else static_frames(seed=i)
        encode_video(ffmpeg_exe, os.path.join(root, "videos", "all", f"video{i}.mp4"), frames,
                     extra=("-crf", "8"))
    return root


def _samples(shards_dir, split):
    import webdataset as wds

    urls = sorted(glob.glob(os.path.join(shards_dir, f"{split}-*.tar")))
    return [decode_sample(s) for s in wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples())]


def _cfg(root, out, **kw):
    base = dict(dataset_root=root, out=str(out), size=SIZE, workers=1)
    mask = dict(min_area=4)
    for name in [k for k in kw if k in MaskConfig.__dataclass_fields__]:
        mask[name] = kw.pop(name)
    base.update(kw)
    return PreprocessConfig(**base, mask=MaskConfig(**mask))


@pytest.fixture(scope="module")
def motion_shards(motion_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    run_preprocess(_cfg(motion_root, out, samples_per_shard=2))
    return str(out)


def test_moving_square_mask_covers_its_path_not_the_background(motion_shards):
    sample = next(s for s in _samples(motion_shards, "train") if s["meta"]["video_id"] == "video0")
    meta = sample["meta"]
    assert meta["indices"] == [1, 3, 5, 7, 9, 11] and meta["partners"] == [2, 4, 6, 8, 10, 10]
    for t, (i, j) in enumerate(zip(meta["indices"], meta["partners"])):
        mask = sample["masks"][t] > 0
        path = np.zeros((SIZE, SIZE), bool)
        for k in (i, j):
            path[26:38, 4 + 4 * k:16 + 4 * k] = True
        changed = path.copy()
        lo, hi = sorted((i, j))
        changed[26:38, 4 + 4 * hi:16 + 4 * lo] = False  # overlap stays white in both frames
        near = np.zeros_like(path)
        near[24:40, max(0, 2 + 4 * lo):min(SIZE, 18 + 4 * hi)] = True
        assert mask[changed].mean() > 0.9, f"frame {t}: square's path not covered"
        assert not mask[~near].any(), f"frame {t}: background marked as moving"
        assert not meta["mask"]["fallback"][t]
        # stored masks are binary and aligned with the frames
        assert set(np.unique(sample["masks"][t])) <= {0, 255}
        assert sample["frames"][t].shape[:2] == mask.shape


def test_static_clip_gets_the_full_mask(motion_shards):
    sample = next(s for s in _samples(motion_shards, "train") if s["meta"]["video_id"] == "video1")
    assert (sample["masks"] == 255).all()
    assert all(sample["meta"]["mask"]["fallback"])


def test_empty_mask_zero_keeps_static_clips_empty(motion_root, tmp_path):
    run_preprocess(_cfg(motion_root, tmp_path, split="train", empty_mask="zero", limit=2))
    sample = next(s for s in _samples(str(tmp_path), "train") if s["meta"]["video_id"] == "video1")
    assert (sample["masks"] == 0).all() and not any(sample["meta"]["mask"]["fallback"])


def test_test_split_has_twelve_frames_and_manifest_counts(motion_shards):
    samples = _samples(motion_shards, "test")
    assert [s["meta"]["video_id"] for s in samples] == ["video4", "video5"]
    assert all(s["frames"].shape == (12, SIZE, SIZE, 3) for s in samples)
    assert samples[0]["captions"] == ["a sentence about video4"]
    manifest = json.load(open(os.path.join(motion_shards, "manifest.json")))
    assert manifest["splits"]["train"]["videos"] == 4 and manifest["splits"]["train"]["captions"] == 8
    assert [s["name"] for s in manifest["splits"]["train"]["shards"]] == ["train-000000.tar", "train-000001.tar"]
    assert manifest["splits"]["test"]["frames"] == 12 and manifest["failures"] == []
    assert manifest["mask"]["tau"] == 25.0 and manifest["ffmpeg"]["decoder"] == "pyav"


def test_stock_webdataset_reads_every_member(motion_shards):
    import webdataset as wds

    url = os.path.join(motion_shards, "train-000000.tar")
    samples = list(wds.WebDataset(url, shardshuffle=False).decode("rgb"))
    assert len(samples) == 2
    s = samples[0]
    assert s["__key__"] == "video0"
    members = {k for k in s if not k.startswith("__")}
    assert members == {"json", "captions.json"} | {f"f{i:02d}.jpg" for i in range(6)} | {f"m{i:02d}.png" for i in
                                                                                         range(6)}
    assert s["f00.jpg"].shape == (SIZE, SIZE, 3) and s["m05.png"].shape[:2] == (SIZE, SIZE)
    meta = s["json"]
    for k in ("video_id", "source", "indices", "fps", "duration", "mask", "schema_version"):
        assert k in meta
    assert meta["mask"]["kernel"] == 3 and meta["mask"]["diff_mode"] == "adjacent"
    assert s["captions.json"] == ["clip video0 caption 0", "clip video0 caption 1"]


def test_raising_tau_never_adds_mask_pixels_end_to_end(motion_root, tmp_path):
    prev = None
    for tau in (0, 25, 100):
        out = tmp_path / f"tau{tau}"
        run_preprocess(_cfg(motion_root, out, split="train", tau=tau, empty_mask="zero", limit=1))
        masks = _samples(str(out), "train")[0]["masks"] > 0
        if prev is not None:
            assert not (masks & ~prev).any()
        prev = masks


# ---------------------------------------------------------------- resume and safety

def _tree(out):
    return {os.path.basename(p): open(p, "rb").read() for p in sorted(glob.glob(os.path.join(out, "*.tar")))}


def test_rerun_reuses_finished_shards_and_refuses_other_config(motion_root, tmp_path):
    run_preprocess(_cfg(motion_root, tmp_path, samples_per_shard=1))
    before = {p: os.stat(p).st_mtime_ns for p in glob.glob(str(tmp_path / "*.tar"))}
    result = run_preprocess(_cfg(motion_root, tmp_path, samples_per_shard=1))
    assert result.reused_shards == 6 and result.processed_now == 0
    assert {p: os.stat(p).st_mtime_ns for p in glob.glob(str(tmp_path / "*.tar"))} == before
    with pytest.raises(ConfigError, match=r"--tau 25.0, this run asks 30.0: pass --overwrite"):
        run_preprocess(_cfg(motion_root, tmp_path, samples_per_shard=1, tau=30))
    run_preprocess(_cfg(motion_root, tmp_path, samples_per_shard=1, tau=30, overwrite=True))
    assert json.load(open(tmp_path / "manifest.json"))["config"]["tau"] == 30


def test_interrupted_leftovers_are_redone_exactly(motion_root, tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "out"
    run_preprocess(_cfg(motion_root, ref, samples_per_shard=1))
    run_preprocess(_cfg(motion_root, out, samples_per_shard=1))
    # Simulate kills at different moments: a half-written partial, a tar renamed but no stats yet.
    os.remove(out / "train-000001.stats.json")
    os.remove(out / "train-000002.stats.json")
    os.remove(out / "train-000002.tar")
    (out / "train-000002.tar.partial").write_bytes(b"half a tar")
    os.remove(out / "manifest.json")
    result = run_preprocess(_cfg(motion_root, out, samples_per_shard=1))
    assert result.processed_now == 2
    assert _tree(str(out)) == _tree(str(ref))
    assert not glob.glob(str(out / "*.partial"))


def test_kill_9_then_resume_equals_uninterrupted(motion_root, tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "out"
    run_preprocess(_cfg(motion_root, ref, samples_per_shard=1))
    cmd = [sys.executable, "-m", "fda", "preprocess", motion_root, "--out", str(out), "--size", str(SIZE),
           "--workers", "1", "--min-area", "4", "--samples-per-shard", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not glob.glob(str(out / "*.stats.json")) and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(glob.glob(str(out / "*.stats.json")))
    assert finished < 6, "the run finished before it could be killed"
    for tar in glob.glob(str(out / "*.tar")):  # nothing half-written under a final name
        assert tar.endswith(".tar") and os.path.getsize(tar) % 512 == 0
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _tree(str(out)) == _tree(str(ref))


# ---------------------------------------------------------------- bad input

@pytest.fixture(scope="module")
def zoo_root(tmp_path_factory, ffmpeg_exe):
    """A folder layout holding one of every kind of bad input, plus good videos with awkward names."""
    root = tmp_path_factory.mktemp("zoo")
    good = moving_square_frames(n=10)
    names = {"-leading dash": "-leading dash.mp4", "spaced name": "spaced name.mp4", "ünïcödé": "ünïcödé.mp4"}
    for stem, fname in names.items():
        encode_video(ffmpeg_exe, str(root / fname), good)
    encode_video(ffmpeg_exe, str(root / "fine.mp4"), good)
    encode_video(ffmpeg_exe, str(root / "single.mp4"), good[:1])
    (root / "zero.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("this is not a video\n" * 50)
    full = encode_video(ffmpeg_exe, str(root / "whole.mp4"), moving_square_frames(n=40))
    data = open(full, "rb").read()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    os.remove(full)
    subprocess.run([ffmpeg_exe, "-y", "-loglevel", "error", "-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac",
                    str(root / "audio.mp4")], check=True)
    rows = ["video,caption,split"]
    for stem in ["-leading dash", "spaced name", "ünïcödé", "single", "zero", "text", "truncated", "audio",
                 "missing"]:
        rows.append(f"{stem}.mp4,a caption for {stem},train")
    (root / "captions.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return str(root)


def test_bad_input_zoo_is_recorded_and_the_run_goes_on(zoo_root, tmp_path):
    cfg = _cfg(zoo_root, tmp_path, max_failure_rate=1.0)
    result = run_preprocess(cfg)
    manifest = result.manifest
    failures = {f["video_id"]: f["error"] for f in manifest["failures"]}
    assert set(failures) == {"single", "zero", "text", "truncated", "audio", "missing"}
    assert "at least 2" in failures["single"] and "empty" in failures["zero"]
    assert "no video stream" in failures["audio"] and "not found" in failures["missing"]
    assert all("\n" not in e and e for e in failures.values())
    ok = {s["meta"]["video_id"] for s in _samples(str(tmp_path), "train")}
    assert ok == {"-leading dash", "spaced name", "ünïcödé"}
    keys = [s["key"] for s in _samples(str(tmp_path), "train")]
    assert all("." not in k and " " not in k for k in keys)
    # "fine.mp4" has no caption row, so it is not listed; captionless listed videos are tested in the layouts.


def test_failure_rate_and_nothing_ok_exit_codes(zoo_root, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["preprocess", zoo_root, "--out", str(tmp_path / "a"), "--workers", "1",
                              "--size", "32"])
    assert res.exit_code == 3
    assert "6 of 9 videos failed" in res.stderr and "--max-failure-rate" in res.stderr
    assert os.path.isfile(tmp_path / "a" / "manifest.json")  # the good ones are kept
    res = runner.invoke(cli, ["preprocess", zoo_root, "--out", str(tmp_path / "b"), "--workers", "1",
                              "--split", "train", "--limit", "1", "--size", "32"])
    assert res.exit_code == 0, res.stderr


def test_nothing_succeeded_is_an_input_error(tmp_path):
    (tmp_path / "x.mp4").write_bytes(b"")
    (tmp_path / "captions.csv").write_text("video,caption\nx.mp4,a caption\n")
    with pytest.raises(InputError, match="no video could be preprocessed"):
        run_preprocess(_cfg(str(tmp_path), tmp_path / "out"))


@pytest.mark.parametrize("args,code,text", [
    (["--tau", "-1"], 2, "--tau must be in 0..255"),
    (["--kernel", "4"], 2, "--kernel must be 0 (no morphology) or an odd integer"),
    (["--frames-train", "0"], 2, "--frames-train must be an integer in 1..99"),
    (["--split", "train,bogus"], 2, "--split must be a comma list"),
    (["--layout", "youtube"], 2, "Invalid value for '--layout'"),
    (["--ray-address", "auto"], 2, "--ray-address needs --engine ray"),
])
def test_bad_options_are_one_line_errors(motion_root, tmp_path, args, code, text):
    res = CliRunner().invoke(cli, ["preprocess", motion_root, "--out", str(tmp_path), *args])
    assert res.exit_code == code
    assert text in res.stderr and "Traceback" not in res.stderr
    assert len([ln for ln in res.stderr.splitlines() if ln.startswith("Error")]) == 1


def test_missing_root(tmp_path):
    # the README's rule: a dataset root (or shard set) that is not there is missing input data, exit 3
    res = CliRunner().invoke(cli, ["preprocess", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 3 and "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1 and "is not a folder" in res.stderr and not (tmp_path / "o").exists()


def test_one_decode_for_several_mask_settings_equals_one_run_per_setting(motion_root, tmp_path):
    import dataclasses

    from fda.pipeline.preprocess import preprocess_shard_sets
    plain = _cfg(motion_root, tmp_path / "plain", samples_per_shard=3)
    robust = _cfg(motion_root, tmp_path / "robust", samples_per_shard=3, tau=12.0, kernel=0, empty_mask="zero",
                  camera_motion="compensate", normalize_brightness=True)
    sets = [(str(tmp_path / "a"), plain.mask), (str(tmp_path / "b"), robust.mask)]
    results = preprocess_shard_sets(plain, sets)
    assert [r.out for r in results] == [out for out, _ in sets]
    run_preprocess(plain)
    run_preprocess(robust)
    for out, alone in ((tmp_path / "a", plain.out), (tmp_path / "b", robust.out)):
        assert _tree(str(out)) == _tree(alone) and len(_tree(alone)) == 3
        assert open(out / "config.json").read() == open(os.path.join(alone, "config.json")).read()
    assert [s["meta"]["mask"]["tau"] for s in _samples(str(tmp_path / "b"), "test")] == [12.0, 12.0]
    with pytest.raises(ConfigError, match="--diff-mode chooses the frames that are decoded"):
        preprocess_shard_sets(plain, [(str(tmp_path / "c"), dataclasses.replace(sets[0][1], diff_mode="sampled"))])
    with pytest.raises(ConfigError, match="its own --out"):
        preprocess_shard_sets(plain, [sets[0], (sets[0][0], sets[1][1])])


def test_two_workers_give_the_same_shards(motion_root, tmp_path):
    run_preprocess(_cfg(motion_root, tmp_path / "one", samples_per_shard=1))
    run_preprocess(_cfg(motion_root, tmp_path / "two", samples_per_shard=1, workers=2))
    assert _tree(str(tmp_path / "one")) == _tree(str(tmp_path / "two"))


def test_ray_engine_on_a_local_instance(motion_root, tmp_path):
    pytest.importorskip("ray")
    run_preprocess(_cfg(motion_root, tmp_path / "local", samples_per_shard=2))
    run_preprocess(_cfg(motion_root, tmp_path / "ray", samples_per_shard=2, engine="ray", workers=2))
    assert _tree(str(tmp_path / "ray")) == _tree(str(tmp_path / "local"))


def test_a_shard_key_collision_is_recorded_not_merged(motion_root, tmp_path, monkeypatch):
    import fda.pipeline.preprocess as pre

    # Real keys carry a digest; force a collision (video0 and video2 share a key) to exercise the guard.
    monkeypatch.setattr(pre, "sample_key", lambda vid: "same" if vid in ("video0", "video2") else vid)
    result = run_preprocess(_cfg(motion_root, tmp_path, split="train", max_failure_rate=1.0))
    assert [s["meta"]["video_id"] for s in _samples(str(tmp_path), "train")] == ["video0", "video1", "video3"]
    assert result.manifest["failures"] == [{"split": "train", "video_id": "video2", "source": "videos/all/video2.mp4",
                                            "error": "its shard key same is taken by video 'video0'"}]


# ---------------------------------------------------------------- reruns tied to their inputs

def _clips(root, ffmpeg_exe, names, seed=0):
    """Small encoded clips under ``root``, one per name (different content per name)."""
    os.makedirs(root, exist_ok=True)
    for i, name in enumerate(names):
        encode_video(ffmpeg_exe, os.path.join(root, name), moving_square_frames(n=8, seed=seed + i))
    return str(root)


def _captions(root, rows):
    with open(os.path.join(root, "captions.csv"), "w", encoding="utf-8") as f:
        f.write("video,caption,split\n" + "".join(f"{v},{c},{s}\n" for v, c, s in rows))


def _small(root, out, **kw):
    return _cfg(root, out, size=32, samples_per_shard=1, **kw)


def test_rerun_redoes_exactly_the_shards_whose_inputs_changed(ffmpeg_exe, tmp_path):
    root = _clips(tmp_path / "data", ffmpeg_exe, ["a.mp4", "b.mp4", "c.mp4", "d.mp4"])
    rows = [("a.mp4", "first", "test"), ("b.mp4", "second", "test"), ("c.mp4", "third", "test")]
    _captions(root, rows)
    out = tmp_path / "out"
    run_preprocess(_small(root, out))
    # edit one caption and add a video: shard 1 is redone, shard 3 is new, shards 0 and 2 stand
    _captions(root, [rows[0], ("b.mp4", "second edited", "test"), rows[2], ("d.mp4", "fourth", "test")])
    kept = {n: os.stat(out / n).st_mtime_ns for n in ("test-000000.tar", "test-000002.tar")}
    result = run_preprocess(_small(root, out))
    assert result.reused_shards == 2 and result.processed_now == 2
    assert result.redone == {"test-000001.tar": "inputs changed: the captions of video 'b' changed"}
    assert "1 redone (first: test-000001.tar: inputs changed" in result.summary()
    assert {n: os.stat(out / n).st_mtime_ns for n in kept} == kept
    split = result.manifest["splits"]["test"]
    assert (split["listed"], split["videos"], split["failed"]) == (4, 4, 0)
    assert {s["meta"]["video_id"]: s["captions"] for s in _samples(str(out), "test")}["b"] == ["second edited"]
    # a file changed on disk (size, mtime) is redone too; the result equals a fresh run byte for byte
    encode_video(ffmpeg_exe, os.path.join(root, "c.mp4"), static_frames(n=8))
    result = run_preprocess(_small(root, out))
    assert list(result.redone) == ["test-000002.tar"]
    assert "video 'c' changed on disk" in result.redone["test-000002.tar"]
    run_preprocess(_small(root, tmp_path / "fresh"))
    assert _tree(str(out)) == _tree(str(tmp_path / "fresh"))
    # nothing changed: everything stands
    assert run_preprocess(_small(root, out)).redone == {}


def test_another_root_into_the_same_out_is_redone_and_recorded(ffmpeg_exe, tmp_path):
    cap = _clips(tmp_path / "cap", ffmpeg_exe, ["a.mp4", "b.mp4"])
    _captions(cap, [("a.mp4", "a cap video", "test"), ("b.mp4", "b cap video", "test")])
    weird = _clips(tmp_path / "weird", ffmpeg_exe, ["a.mp4"], seed=7)
    _captions(weird, [("a.mp4", "a weird video", "test")])
    out = tmp_path / "out"
    run_preprocess(_small(cap, out))
    result = run_preprocess(_small(weird, out))
    assert result.reused_shards == 0 and "now " + os.path.join(weird, "a.mp4") in result.redone["test-000000.tar"]
    assert not os.path.exists(out / "test-000001.tar")  # cap's second shard is gone, not left for readers
    assert [s["captions"] for s in _samples(str(out), "test")] == [["a weird video"]]
    manifest = result.manifest
    assert manifest["dataset_root"] == os.path.realpath(weird)
    assert [a["path"] for a in manifest["annotations"]] == [os.path.join(os.path.realpath(weird), "captions.csv")]
    assert manifest["splits"]["test"]["listed"] == manifest["splits"]["test"]["videos"] == 1


def test_fixed_videos_are_redone_and_retry_failed_retries_the_rest(ffmpeg_exe, tmp_path, monkeypatch):
    import fda.pipeline.clips as pre

    root = _clips(tmp_path / "data", ffmpeg_exe, ["good.mp4", "flaky.mp4"])
    (tmp_path / "data" / "broken.mp4").write_bytes(b"")
    _captions(root, [("good.mp4", "fine", "test"), ("broken.mp4", "broken", "test"), ("flaky.mp4", "flaky", "test")])
    real = pre._sample_and_decode

    def flaky(path, count, cfg, *rest):
        if path.endswith("flaky.mp4"):
            raise pre.VideoError("a passing hiccup")
        return real(path, count, cfg, *rest)

    monkeypatch.setattr(pre, "_sample_and_decode", flaky)
    out = tmp_path / "out"
    first = run_preprocess(_small(root, out, max_failure_rate=1.0))
    assert {f["video_id"] for f in first.manifest["failures"]} == {"broken", "flaky"}
    monkeypatch.setattr(pre, "_sample_and_decode", real)
    # the broken file is replaced: its shard is redone without asking; the hiccup stays recorded
    encode_video(ffmpeg_exe, os.path.join(root, "broken.mp4"), moving_square_frames(n=8, seed=5))
    second = run_preprocess(_small(root, out, max_failure_rate=1.0))
    assert list(second.redone) == ["test-000001.tar"]
    assert [f["video_id"] for f in second.manifest["failures"]] == ["flaky"]
    third = run_preprocess(_small(root, out, retry_failed=True))
    assert third.redone == {"test-000002.tar": "retrying 1 failed video (--retry-failed)"}
    assert third.manifest["failures"] == [] and third.manifest["splits"]["test"]["videos"] == 3


def test_a_damaged_tar_is_redone(motion_root, tmp_path):
    out = tmp_path / "out"
    run_preprocess(_cfg(motion_root, tmp_path / "ref", samples_per_shard=2))
    run_preprocess(_cfg(motion_root, out, samples_per_shard=2))
    data = (out / "train-000000.tar").read_bytes()
    (out / "train-000000.tar").write_bytes(data[:len(data) // 2])  # truncated
    flipped = bytearray((out / "test-000000.tar").read_bytes())
    flipped[700] ^= 0xFF  # same size, different bytes
    (out / "test-000000.tar").write_bytes(bytes(flipped))
    result = run_preprocess(_cfg(motion_root, out, samples_per_shard=2))
    assert result.redone == {
        "train-000000.tar": f"its tar is {len(data) // 2} bytes, {len(data)} recorded (damaged or replaced)",
        "test-000000.tar": "its tar's sha256 differs from the recorded one (damaged or replaced)"}
    assert result.reused_shards == 1
    assert _tree(str(out)) == _tree(str(tmp_path / "ref"))
    stats = json.load(open(out / "train-000000.stats.json"))
    assert stats["tar"]["size"] == len(data) and len(stats["tar"]["sha256"]) == 64


def test_same_stem_files_keep_distinct_ids(ffmpeg_exe, tmp_path):
    root = _clips(tmp_path / "data", ffmpeg_exe, ["x.mp4", "x.mkv"])
    _captions(root, [("x.mp4", "the mp4", "test"), ("x.mkv", "the mkv", "test")])
    result = run_preprocess(_small(root, tmp_path / "out"))
    samples = {s["meta"]["video_id"]: s for s in _samples(str(tmp_path / "out"), "test")}
    assert {v: (s["meta"]["source"], s["captions"]) for v, s in samples.items()} == {
        "x.mp4": ("x.mp4", ["the mp4"]), "x.mkv": ("x.mkv", ["the mkv"])}
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", s["key"]) for s in samples.values())
    assert result.manifest["failures"] == []


def test_a_fifo_is_reported_as_such(tmp_path):
    from fda.pipeline.datasets import VideoItem
    from fda.pipeline.clips import process_video

    os.mkfifo(tmp_path / "pipe.mp4")
    item = VideoItem("pipe", "test", str(tmp_path / "pipe.mp4"), ("a caption",), "pipe.mp4")
    members, record = process_video(item, _cfg(str(tmp_path), tmp_path / "out"))
    assert members is None and record["error"] == "pipe.mp4 is a FIFO (named pipe), not a regular file: list the " \
                                                  "video file itself"


# ---------------------------------------------------------------- damaged and unusual videos

@pytest.fixture(scope="module")
def damaged_root(tmp_path_factory, ffmpeg_exe):
    """good.mp4, a copy with 20% of its bytes zeroed in the middle, and a copy cut in half (both faststart)."""
    root = tmp_path_factory.mktemp("damaged")
    good = str(root / "good.mp4")
    subprocess.run([ffmpeg_exe, "-y", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25",
                    "-t", "8", "-c:v", "libx264", "-g", "50", "-pix_fmt", "yuv420p", "-movflags", "+faststart", good],
                   check=True)
    data = open(good, "rb").read()
    middle, span = len(data) // 2, len(data) // 5
    (root / "corrupt.mp4").write_bytes(data[:middle] + bytes(span) + data[middle + span:])
    (root / "truncated.mp4").write_bytes(data[:len(data) // 2])
    (root / "captions.csv").write_text("video,caption\ngood.mp4,fine\ncorrupt.mp4,broken\ntruncated.mp4,half\n")
    return str(root)


def test_corrupt_and_truncated_files_are_recorded_failures(damaged_root, tmp_path):
    result = run_preprocess(_cfg(damaged_root, tmp_path, max_failure_rate=1.0))
    errors = {f["video_id"]: f["error"] for f in result.manifest["failures"]}
    assert set(errors) == {"corrupt", "truncated"}
    assert "decodable" in errors["corrupt"] and "--min-decodable 0.95" in errors["corrupt"]
    assert errors["truncated"].startswith("truncated file: it holds") and "of its 200 frames" in errors["truncated"]
    (split,) = result.manifest["splits"]
    meta = _samples(str(tmp_path), split)[0]["meta"]
    assert meta["video_id"] == "good" and meta["frames_lost"] == 0 and meta["lost_at"] == []
    assert meta["rotation"] == 0 and meta["sar"] == [1, 1] and meta["deinterlaced"] is False


def test_below_the_threshold_a_damaged_clip_records_its_lost_frames(damaged_root, tmp_path):
    result = run_preprocess(_cfg(damaged_root, tmp_path, max_failure_rate=1.0, min_decodable=0.4))
    assert {f["video_id"] for f in result.manifest["failures"]} == set()
    (split,) = result.manifest["splits"]
    metas = {s["meta"]["video_id"]: s["meta"] for s in _samples(str(tmp_path), split)}
    corrupt, truncated = metas["corrupt"], metas["truncated"]
    assert corrupt["frames_lost"] > 0 and corrupt["decode_errors"] > 0 and corrupt["lost_at"]
    lost = {i for a, b in corrupt["lost_at"] for i in range(a, b + 1)}
    assert not lost & set(corrupt["indices"] + corrupt["partners"])  # only decoded frames are sampled
    assert corrupt["frames_lost"] == len(lost)
    assert truncated["truncated_frames"] == 200 - truncated["num_frames"] and truncated["frames_lost"] >= 80
    assert max(truncated["indices"]) < truncated["num_frames"]


# ---------------------------------------------------------------- parallelism by video, interrupts

def test_one_big_shard_two_workers_equal_one_byte_for_byte(ffmpeg_exe, tmp_path):
    root = tmp_path / "many"
    root.mkdir()
    rows = []
    for i in range(48):  # 48 distinct clips, one shard: two workers must share it
        frames = moving_square_frames(n=8 + i % 5, size=32, step=2, side=8, seed=i)
        encode_video(ffmpeg_exe, str(root / f"clip{i:02d}.mp4"), frames, extra=("-crf", "20", "-preset", "ultrafast"))
        rows.append(f"clip{i:02d}.mp4,clip number {i}\n")
    (root / "captions.csv").write_text("video,caption\n" + "".join(rows))
    one, two = tmp_path / "one", tmp_path / "two"
    run_preprocess(_cfg(str(root), one, size=32, samples_per_shard=48, workers=1))
    result = run_preprocess(_cfg(str(root), two, size=32, samples_per_shard=48, workers=2))
    assert len(_tree(str(one))) == 1 and result.manifest["failures"] == []
    assert _tree(str(one)) == _tree(str(two))
    assert open(glob.glob(str(one / "*.stats.json"))[0]).read() == open(glob.glob(str(two / "*.stats.json"))[0]).read()


@pytest.fixture(scope="module")
def slow_root(tmp_path_factory, ffmpeg_exe):
    """Twelve copies of a 640x480 clip (a few hundred ms each to preprocess)."""
    root = tmp_path_factory.mktemp("slow")
    first = str(root / "v00.mp4")
    subprocess.run([ffmpeg_exe, "-y", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=640x480:rate=25",
                    "-t", "10", "-c:v", "libx264", "-preset", "ultrafast", "-g", "250", "-pix_fmt", "yuv420p", first],
                   check=True)
    data = open(first, "rb").read()
    for i in range(1, 12):
        (root / f"v{i:02d}.mp4").write_bytes(data)
    (root / "captions.csv").write_text("video,caption\n" + "".join(f"v{i:02d}.mp4,clip {i}\n" for i in range(12)))
    return str(root)


@pytest.mark.slow
@pytest.mark.parametrize("sig,code,workers", [(signal.SIGINT, 130, 2), (signal.SIGTERM, 143, 1)])
def test_a_signal_stops_promptly_leaves_no_torn_shard_and_resumes(slow_root, tmp_path, sig, code, workers):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "fda", "preprocess", slow_root, "--out", str(out), "--size", "32",
           "--workers", str(workers), "--samples-per-shard", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not glob.glob(str(out / "*.stats.json")) and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    sent = time.time()
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    stopped_in = time.time() - sent
    assert proc.returncode == code, stderr
    assert stopped_in < 5, f"took {stopped_in:.1f} s to stop"
    assert "rerun the same command to resume" in stderr and "Traceback" not in stderr
    assert not glob.glob(str(out / "*.partial"))
    tars = sorted(os.path.basename(p) for p in glob.glob(str(out / "*.tar")))
    stats = sorted(os.path.basename(p)[:-len(".stats.json")] + ".tar" for p in glob.glob(str(out / "*.stats.json")))
    assert tars == stats and 0 < len(tars) < 6
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{len(tars)} shards already done" in done.stdout
    assert len(glob.glob(str(out / "*.tar"))) == 6


def test_workers_start_after_the_parent_used_opencv_threads(motion_root, tmp_path):
    """Forking after OpenCV's thread pool ran in the parent must not hang the workers (in a subprocess: a hang
    would otherwise stop the suite)."""
    code = (
        "import cv2, numpy as np, sys\n"
        "a = np.zeros((1024, 1024), np.uint8)\n"
        "for _ in range(3): cv2.warpAffine(a, np.eye(2, 3), (1024, 1024)); cv2.GaussianBlur(a, (5, 5), 1)\n"
        "from fda.config import MaskConfig, PreprocessConfig\n"
        "from fda.pipeline.preprocess import run_preprocess\n"
        f"r = run_preprocess(PreprocessConfig({motion_root!r}, out={str(tmp_path)!r}, size=32, workers=2, "
        "samples_per_shard=2))\n"
        "print(r.manifest['splits']['train']['videos'])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) > 0


# ---------------------------------------------------------------------------------------------------------------
# DiDeMo: sampling keeps to the annotated first 30 s


def _didemo_root(root, ffmpeg_exe, seconds=40, fps=1):
    """A DiDeMo layout (official file formats) with one real test clip whose frame ``i`` has grey level 6i + 4."""
    name = "4567@N00_1234_abcdef.mov"
    os.makedirs(os.path.join(root, "videos"), exist_ok=True)
    for split in ("train", "test"):
        with open(os.path.join(root, f"{split}_list.txt"), "w") as f:
            f.write(f"{name}\n" if split == "test" else "")
        with open(os.path.join(root, f"{split}_data.json"), "w") as f:
            json.dump([{"description": "a grey screen brightens", "times": [[0, 1], [0, 1], [0, 0], [0, 1]],
                        "video": name, "num_segments": 6}] if split == "test" else [], f)
    values = (np.arange(seconds * fps) * 6 + 4).astype(np.uint8)
    frames = np.broadcast_to(values[:, None, None, None], (len(values), 48, 64, 3)).copy()
    encode_video(ffmpeg_exe, os.path.join(root, "videos", name.replace(".mov", ".mp4")), frames, fps=fps,
                 extra=("-crf", "0", "-g", "1"))
    return root


def test_didemo_samples_only_the_first_30_seconds(tmp_path, ffmpeg_exe):
    root = _didemo_root(str(tmp_path / "didemo"), ffmpeg_exe)  # 40 s at 1 fps: frame i is presented at i s
    run_preprocess(_cfg(root, tmp_path / "window", split="test", frames_test=4))
    (sample,) = _samples(str(tmp_path / "window"), "test")
    meta = sample["meta"]
    assert meta["num_frames"] == 40
    assert meta["indices"] == [3, 11, 18, 26] and max(meta["partners"]) < 30  # over frames 0..29, not 0..39
    assert meta["window"]["end"] == 30.0 and meta["window"]["frames"] == 30
    grey = sample["frames"][..., 0].reshape(4, -1).mean(axis=1)
    assert np.allclose(grey, np.array(meta["indices"]) * 6 + 4, atol=3)  # the decoded frames are those frames
    manifest = json.load(open(tmp_path / "window" / "manifest.json"))
    assert manifest["layout"] == "didemo" and manifest["splits"]["test"]["captions"] == 1

    run_preprocess(_cfg(root, tmp_path / "full", split="test", frames_test=4, full_duration=True))
    (sample,) = _samples(str(tmp_path / "full"), "test")
    assert sample["meta"]["indices"] == [5, 15, 25, 35] and "window" not in sample["meta"]
    with pytest.raises(ConfigError, match="--full-duration applies to --layout didemo only"):
        PreprocessConfig(root, layout="msvd", full_duration=True)


def test_full_duration_on_another_layout_is_a_config_error(motion_root, tmp_path):
    res = CliRunner().invoke(cli, ["preprocess", motion_root, "--out", str(tmp_path), "--full-duration"])
    assert res.exit_code == 2 and "--full-duration applies to the didemo layout only" in res.stderr


def test_frames_before_counts_frames_presented_before_the_end():
    from fda.pipeline.sampling import frames_before

    times = np.arange(40, dtype=np.float64) / 1.0
    assert frames_before(times, 30.0) == 30  # times 0..29 s; the frame at exactly 30 s is out
    assert frames_before(times + 0.5, 30.0) == 30
    assert frames_before(np.arange(10) / 25.0, 30.0) == 10  # a short clip: all of it
    assert frames_before(np.array([0.0, 31.0, 32.0]), 30.0) == 2  # at least two frames, for a mask
    assert frames_before(np.array([0.0]), 30.0) == 1
