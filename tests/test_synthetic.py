"""Synthetic videos: real encodes with known content, loadable as MSR-VTT, objects where the captions say."""

import json
import os

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from fda.cli import cli
from fda.lab.config import GenerateConfig
from fda.errors import ConfigError, InputError
from fda.pipeline.datasets import load_dataset
from fda.lab.scenes import (META_FILE, PALETTE, ClipSpec, ObjectSpec, captions_for,
                            make_msrvtt_demo, render_clip, render_frames)

TINY = dict(size=(64, 48), fps=8, seconds=1)  # 8 frames of 64x48: a few kB, tens of ms per video


def _decode(path):
    """All frames, uint8 [T, H, W, 3] RGB."""
    cap = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    return np.stack(frames)


def _centroid(frame, colour):
    """(x, y) centroid of the pixels close to ``colour``; None when there are too few."""
    dist = np.abs(frame.astype(np.int32) - np.array(PALETTE[colour])).sum(axis=-1)
    ys, xs = np.nonzero(dist < 90)
    return None if len(xs) < 10 else np.array([xs.mean(), ys.mean()])


def test_render_clip_frames_and_determinism(tmp_path):
    spec = ClipSpec("red", "square", "right")
    a, b, c = (str(tmp_path / n) for n in ("a.mp4", "b.mp4", "c.mp4"))
    assert render_clip(a, spec, seed=3, **TINY) == 8
    render_clip(b, spec, seed=3, **TINY)
    render_clip(c, spec, seed=4, **TINY)
    assert open(a, "rb").read() == open(b, "rb").read()
    assert open(a, "rb").read() != open(c, "rb").read()
    frames = _decode(a)
    assert frames.shape == (8, 48, 64, 3)
    assert not [n for n in os.listdir(tmp_path) if "part" in n]  # no temporary left behind


@pytest.mark.parametrize("motion,axis,sign", [("right", 0, 1), ("left", 0, -1), ("up", 1, -1), ("down", 1, 1)])
def test_moving_object_moves(tmp_path, motion, axis, sign):
    path = str(tmp_path / f"{motion}.mp4")
    render_clip(path, ClipSpec("blue", "circle", motion), seed=1, **TINY)
    frames = _decode(path)
    first, last = _centroid(frames[0], "blue"), _centroid(frames[-1], "blue")
    shift = last - first
    assert sign * shift[axis] > 15  # 60 % of the free span: about 30 px horizontally, 22 px vertically
    assert abs(shift[1 - axis]) < 2


def test_static_scene_is_static(tmp_path):
    spec = ClipSpec("yellow", "triangle", "static")
    frames = list(render_frames(spec, size=(64, 48), frames=5, seed=2))
    assert all(np.array_equal(frames[0], f) for f in frames[1:])  # bit-identical before encoding
    path = str(tmp_path / "s.mp4")
    render_clip(path, spec, seed=2, **TINY)
    decoded = _decode(path).astype(np.int32)
    assert np.abs(decoded[0] - decoded[-1]).mean() < 1.0  # only codec noise left
    assert np.linalg.norm(_centroid(decoded[0], "yellow") - _centroid(decoded[-1], "yellow")) < 1


@pytest.mark.parametrize("ext", [".webm", ".avi"])
def test_other_containers(tmp_path, ext):
    path = str(tmp_path / f"x{ext}")
    assert render_clip(path, ClipSpec("green", "square", "down"), **TINY) == 8
    assert len(_decode(path)) == 8


def test_bad_specs(tmp_path):
    with pytest.raises(ConfigError, match="colour must be one of"):
        ClipSpec("pink", "square")
    with pytest.raises(ConfigError, match="motion must be one of"):
        ObjectSpec("red", "square", "sideways")
    with pytest.raises(ConfigError, match="shares the captioned object's colour"):
        ClipSpec("red", "square", "left", (ObjectSpec("red", "circle"),))
    with pytest.raises(ConfigError, match="--size must be even"):
        render_clip(str(tmp_path / "x.mp4"), ClipSpec("red", "square"), size=(63, 48))
    with pytest.raises(ConfigError, match="cannot encode"):
        render_clip(str(tmp_path / "x.gif"), ClipSpec("red", "square"))


def test_captions_name_the_object():
    rng = np.random.default_rng(0)
    caps = captions_for(ClipSpec("red", "square", "right"), rng, 4)
    assert caps[0] == "a red square moves to the right" and len(set(caps)) == 4
    assert all(c.startswith(("a red ", "the red ")) for c in caps)
    assert all("right" in c for c in caps)
    still = captions_for(ClipSpec("blue", "circle"), rng, 3)
    assert still[0] == "a blue circle stays still"


def test_msrvtt_demo(tmp_path):
    root = str(tmp_path / "demo")
    summary = make_msrvtt_demo(root, n_train=5, n_test=4, captions_per_video=3, **TINY)
    assert summary["videos"] == 9 and summary["frames_per_video"] == 8 and summary["captions"] == 27
    for name in ("MSRVTT_data.json", "MSRVTT_train.9k.csv", "MSRVTT_train.7k.csv", "MSRVTT_JSFUSION_test.csv"):
        assert os.path.isfile(os.path.join(root, name))
    ds = load_dataset(root)
    assert ds.layout == "msrvtt"
    assert [it.video_id for it in ds.items["train"]] == [f"video{i}" for i in range(5)]
    assert [it.video_id for it in ds.items["test"]] == [f"video{i}" for i in range(5, 9)]
    assert all(it.path and it.source == f"videos/all/{it.video_id}.mp4" for v in ds.items.values() for it in v)
    assert all(len(it.captions) == 3 for it in ds.items["train"])
    assert all(len(it.captions) == 1 for it in ds.items["test"])
    seven = load_dataset(root, msrvtt_train="7k").items["train"]
    assert 1 <= len(seven) < 5 and [it.video_id for it in seven] == [f"video{i}" for i in range(len(seven))]
    with open(os.path.join(root, "MSRVTT_JSFUSION_test.csv"), encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    assert lines[0] == "key,vid_key,video_id,sentence" and lines[1].startswith("ret0,msr5,video5,")
    meta = json.load(open(os.path.join(root, META_FILE), encoding="utf-8"))
    test_specs = [tuple(c["captioned"].values()) for c in meta["clips"] if c["split"] == "test"]
    assert len(set(test_specs)) == len(test_specs)  # captions tell every test video apart
    for clip, item in zip(meta["clips"][5:], ds.items["test"]):
        colour = clip["captioned"]["colour"]
        assert colour in item.captions[0]
    # deterministic, and a second run into the same folder is allowed (it replaces the set)
    again = make_msrvtt_demo(root, n_train=5, n_test=4, captions_per_video=3, **TINY)
    assert again == summary
    assert json.load(open(os.path.join(root, META_FILE), encoding="utf-8")) == meta


def _moves(frames, colour):
    return float(np.linalg.norm(_centroid(frames[-1], colour) - _centroid(frames[0], colour)))


@pytest.mark.parametrize("kind", ["motion", "null", "appearance"])
def test_bench_sets_decode_with_the_roles_their_truth_states(tmp_path, kind):
    from fda.lab.scenes import PALETTE, make_bench_set

    root = str(tmp_path / kind)
    make_bench_set(root, kind, n_train=2, n_test=2, seed=5, captions_per_video=2)
    ds = load_dataset(root)
    meta = json.load(open(os.path.join(root, META_FILE), encoding="utf-8"))
    items = ds.items["train"] + ds.items["test"]
    assert [it.video_id for it in items] == [c["video_id"] for c in meta["clips"]]
    for clip, item in zip(meta["clips"], items):
        frames = _decode(item.path)
        assert frames.shape == (6, 64, 64, 3)
        target = next(o for o in clip["objects"] if o["captioned"])
        assert all(target["colour"] in cap for cap in item.captions)  # the captions name the captioned object
        for obj in clip["objects"]:
            dist = np.abs(frames.astype(np.int32) - np.array(PALETTE[obj["colour"]])).sum(-1) < 90
            # only near the object's own path (the truth boxes over all frames), so that another object's colour
            # fringes after compression cannot pull the centroid
            x0, y0 = np.min([b[:2] for b in obj["boxes"]], axis=0) - 2
            x1, y1 = np.max([b[2:] for b in obj["boxes"]], axis=0) + 2
            near = np.zeros(dist.shape[1:], bool)
            near[max(0, y0):y1, max(0, x0):x1] = True
            first, last = (np.array(np.nonzero(d & near)[::-1]).mean(axis=1) for d in (dist[0], dist[-1]))
            moved = float(np.linalg.norm(last - first))
            assert moved > 20 if obj["moves"] else moved < 1.5, (obj, moved)


def test_refuses_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match="not empty"):
        make_msrvtt_demo(str(tmp_path), n_train=1, n_test=1, **TINY)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_generate_config():
    assert GenerateConfig("x").dimensions == (160, 120)
    for kwargs, match in (({"kind": "moving"}, "--kind must be one of demo, motion, null, appearance"),
                          ({"size": "160"}, "--size must be WIDTHxHEIGHT"), ({"size": "161x120"}, "--size"),
                          ({"train": 0}, "--train must be"), ({"fps": 0}, "--fps must be"),
                          ({"seconds": 0.1}, "--seconds must be long enough"), ({"seed": -1}, "--seed")):
        with pytest.raises(ConfigError, match=match):
            GenerateConfig("x", **kwargs)


def test_cli_generate(tmp_path):
    out = str(tmp_path / "set")
    res = CliRunner().invoke(cli, ["generate", out, "--kind", "null", "--train", "2", "--test", "2",
                                   "--size", "64x48", "--fps", "4", "--seconds", "1"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().startswith("wrote 4 null videos (2 train, 2 test, 4 frames at 64x48")
    assert len(res.stdout.strip().splitlines()) == 1
    assert load_dataset(out).layout == "msrvtt"
    res = CliRunner().invoke(cli, ["generate", out, "--size", "64x47"])
    assert res.exit_code == 2 and "Error: --size must be" in res.stderr


def test_the_demo_draws_the_checked_palette_and_its_colours_stand_out():
    """One palette: the demo's six colours are the benchmark palette's (same names, same order, same RGB)."""
    from fda.lab.scenes import DEMO_COLOURS, DemoScene

    assert DEMO_COLOURS == ("red", "green", "blue", "yellow", "purple", "orange") and set(DEMO_COLOURS) <= set(PALETTE)
    for colour, shape in (("red", "square"), ("blue", "circle"), ("orange", "triangle")):
        frame = next(iter(render_frames(ClipSpec(colour, shape), size=(64, 48), frames=2, seed=4)))
        target = DemoScene.of(ClipSpec(colour, shape), size=(64, 48), frames=2, seed=4).objects[-1]
        x, y = (int(round(v)) for v in target.start)
        assert tuple(frame[y, x]) == PALETTE[colour]  # the captioned object's centre, before encoding
    # Objects are found by colour (the centroid above takes pixels within 90 of it): no backdrop pixel comes close.
    for seed in range(5):
        backdrop = DemoScene((), 8, (160, 120), 2, seed).backdrop(160, 120).astype(np.int32)
        for name in DEMO_COLOURS:
            assert np.abs(backdrop - np.array(PALETTE[name])).sum(axis=-1).min() > 90, (name, seed)
