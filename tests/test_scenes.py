"""Benchmark scenes: palette contrast, twins that differ only in what the kind varies, honest layouts, ground truth."""

import json
import os

import numpy as np
import pytest

from fda.lab.config import BENCH_KINDS, SCENE_CONDITIONS, GenerateConfig
from fda.errors import ConfigError
from fda.lab import scenes
from fda.lab.scenes import (BACKGROUND, MIN_CONTRAST, PALETTE, check_palette, grey_level, make_bench_set,
                            render_scene, scene_captions, twin_scenes)
from fda.pipeline.datasets import load_dataset

SIZE = (64, 64)


def _twins(kind, n=40, seed=0, frames=6):
    rng = np.random.default_rng(seed)
    return [twin_scenes(rng, kind, SIZE, frames) for _ in range(n)]


def test_kinds_agree_with_the_config():
    assert scenes.BENCH_KINDS is BENCH_KINDS and scenes.SCENE_CONDITIONS is SCENE_CONDITIONS  # one definition


def test_palette_contrast_is_checked():
    check_palette(PALETTE, BACKGROUND)  # the shipped palette passes
    assert min(abs(grey_level(c) - grey_level(BACKGROUND)) for c in PALETTE.values()) >= MIN_CONTRAST
    grey = {"dim": (80, 80, 80)}  # 40 grey levels from the background
    with pytest.raises(ConfigError, match=r"colour dim \(80, 80, 80\) is 40.0 grey levels from the background"):
        check_palette(grey, BACKGROUND)
    check_palette({"edge": (90, 90, 90)}, BACKGROUND)  # exactly 50 is enough


def test_a_palette_below_contrast_stops_the_generator(tmp_path, monkeypatch):
    monkeypatch.setitem(scenes.PALETTE, "dark", (60, 60, 60))
    with pytest.raises(ConfigError, match="colour dark"):
        make_bench_set(str(tmp_path / "d"), "motion", n_train=2, n_test=2)
    assert not os.path.exists(tmp_path / "d" / "videos")


@pytest.mark.parametrize("kind", BENCH_KINDS)
def test_twins_share_objects_and_layout_and_differ_only_in_what_the_kind_varies(kind):
    for a, b in _twins(kind):
        assert [(o.shape, o.centre, o.axis, o.sign) for o in a.objects] == \
               [(o.shape, o.centre, o.axis, o.sign) for o in b.objects]
        assert sum(o.moves for o in a.objects) == 1 and sum(o.moves for o in b.objects) == 1
        assert sum(o.captioned for o in a.objects) == 1 and sum(o.captioned for o in b.objects) == 1
        ca = next(o for o in a.objects if o.captioned)
        cb = next(o for o in b.objects if o.captioned)
        colours_a, colours_b = [o.colour for o in a.objects], [o.colour for o in b.objects]
        if kind == "motion":
            assert colours_a == colours_b
            assert ca.moves and cb.moves and ca.centre != cb.centre  # the captioned object is the mover, another one
        else:
            assert [o.moves for o in a.objects] == [o.moves for o in b.objects]  # the same mover
            diff = [i for i in range(len(colours_a)) if colours_a[i] != colours_b[i]]
            assert len(diff) == 1 and a.objects[diff[0]].captioned and ca.centre == cb.centre
            assert ca.colour != cb.colour and cb.colour not in colours_a
            if kind == "appearance":
                assert not ca.moves
        assert len(set(colours_a)) == len(colours_a)


def test_null_mover_is_independent_of_the_caption():
    captioned_moves = [next(o for o in a.objects if o.captioned).moves for a, _ in _twins("null", n=300)]
    share = np.mean(captioned_moves)
    assert 0.2 < share < 0.47  # one object in three, drawn independently of the caption


def test_position_says_nothing_about_the_role():
    """Captioned and distractor objects sit equally far from the centre (the layout is drawn before the roles)."""
    dist = {True: [], False: []}
    for a, b in _twins("motion", n=300):
        for o in a.objects:
            dist[o.captioned].append(np.hypot(o.centre[0] - 32, o.centre[1] - 32))
    assert abs(np.mean(dist[True]) - np.mean(dist[False])) < 1.5  # px, on 300 scenes


def test_paths_stay_inside_and_move_at_least_4px_per_frame():
    for a, b in _twins("motion", n=50):
        for scene in (a, b):
            mover = next(o for o in scene.objects if o.moves)
            steps = [np.linalg.norm(scene.position(mover, t + 1) - scene.position(mover, t))
                     for t in range(scene.frames - 1)]
            assert min(steps) >= 4.0
            for o in scene.objects:
                for t in range(scene.frames):
                    x0, y0, x1, y1 = scene.box(o, t)
                    assert 0 <= x0 < x1 <= SIZE[0] and 0 <= y0 < y1 <= SIZE[1]


def test_too_many_frames_for_the_frame_is_a_config_error():
    with pytest.raises(ConfigError, match="use at most"):
        twin_scenes(np.random.default_rng(0), "motion", SIZE, 30)


@pytest.mark.parametrize("condition", ["still", "pan", "zoom", "shake"])
def test_ground_truth_boxes_hold_the_rendered_pixels(condition):
    rng = np.random.default_rng(1)
    for _ in range(6):
        a, _ = twin_scenes(rng, "motion", SIZE, 6, condition)
        frames = list(render_scene(a))
        for t, frame in enumerate(frames):
            for o in a.objects:
                close = np.abs(frame.astype(np.int32) - np.array(PALETTE[o.colour])).sum(-1) < 60
                ys, xs = np.nonzero(close)
                x0, y0, x1, y1 = a.box(o, t)
                assert len(xs) > (40 if condition == "still" else 5)
                assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1
                if condition == "still":  # the box is tight: at most 3 px of margin (faint anti-aliased apexes)
                    assert max(xs.min() - x0, x1 - 1 - xs.max(), ys.min() - y0, y1 - 1 - ys.max()) <= 3
        static = [o for o in a.objects if not o.moves]
        if condition == "still":
            assert all(a.box(o, 0) == a.box(o, a.frames - 1) for o in static)
        else:  # the camera moves the still objects' pixels
            assert any(a.box(o, 0) != a.box(o, a.frames - 1) for o in static)


def test_sensor_conditions_change_the_pixels_the_way_they_say():
    rng = np.random.default_rng(2)
    still, _ = twin_scenes(np.random.default_rng(3), "null", SIZE, 6, "still")
    flicker, _ = twin_scenes(np.random.default_rng(3), "null", SIZE, 6, "flicker")
    f = np.stack(list(render_scene(flicker))).astype(np.int32)
    assert not f[..., 0].std() == 0  # textured
    lo, hi = scenes.TEXTURE_RANGE
    background = f[0][np.all(f[0] == f[0][..., :1], axis=-1)]
    assert background.min() >= lo and background.max() <= hi  # the texture keeps the palette's contrast
    step = (f[1] - f[0])[np.all(f[0] == f[0][..., :1], axis=-1)]
    assert np.median(step) == scenes.FLICKER
    noisy, _ = twin_scenes(rng, "null", SIZE, 6, "noise")
    n = np.stack(list(render_scene(noisy))).astype(np.float64)
    assert 7 < np.median(np.abs(n[1] - n[0])) < 12  # |N(0, sqrt(2) * 10)| has median 9.5
    s = np.stack(list(render_scene(still)))
    assert np.array_equal(s[0], s[1]) or any(o.moves for o in still.objects)


def test_captions_name_the_captioned_object():
    rng = np.random.default_rng(0)
    for kind, word in (("motion", "mov"), ("null", None), ("appearance", "st")):
        a, _ = twin_scenes(rng, kind, SIZE, 6)
        obj = next(o for o in a.objects if o.captioned)
        caps = scene_captions(a, kind, rng, 5)
        assert len(set(caps)) == 5 and all(obj.colour in c for c in caps)
        assert obj.shape in caps[0]
        if word:
            assert word in caps[0]


def test_generated_set_loads_as_msrvtt_with_twins_and_truth(tmp_path):
    root = str(tmp_path / "motion")
    cfg = GenerateConfig(out_dir=root, kind="motion", train=4, test=4)
    assert cfg.dimensions == (64, 64) and cfg.frame_rate == 2
    summary = scenes.run_generate(cfg)
    assert summary["frames_per_video"] == 6 and summary["size"] == [64, 64]
    ds = load_dataset(root)
    assert len(ds.items["test"]) == 4 and len(ds.items["train"]) == 4
    meta = json.load(open(os.path.join(root, "fda_synthetic.json")))
    clips = {c["video_id"]: c for c in meta["clips"]}
    for vid, clip in clips.items():
        twin = clips[clip["twin"]]
        assert twin["twin"] == vid and twin["split"] == clip["split"]
        assert len(clip["objects"]) == 3 and all(len(o["boxes"]) == 6 for o in clip["objects"])
        mover = next(o for o in clip["objects"] if o["moves"])
        assert mover["captioned"] and clip["captions"][0] == f"the {mover['colour']} {mover['shape']} moves"
    with pytest.raises(ConfigError, match="--train must be even"):
        make_bench_set(str(tmp_path / "odd"), "null", n_train=3, n_test=2)


def test_any_scene_description_goes_through_the_one_renderer():
    """render_scene draws whatever follows the Renderable protocol: a toy description, one still disc and a mover."""
    import dataclasses

    from fda.lab.scenes import render_scene

    @dataclasses.dataclass(frozen=True)
    class Dot:
        colour: str
        shape: str
        speed: float

    @dataclasses.dataclass(frozen=True)
    class Toy:
        objects: tuple = (Dot("white", "circle", 0.0), Dot("cyan", "square", 4.0))
        size: tuple = (48, 32)
        frames: int = 3
        radius: float = 4.0
        condition: str = "still"
        cameras: tuple = ()
        seed: int = 0

        def position(self, obj, t):
            return np.array([12.0 + obj.speed * t, 8.0 if obj.speed else 16.0])

        def camera(self, t):
            return np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])

        def backdrop(self, width, height):
            return np.zeros((height, width, 3), np.uint8)

    frames = list(render_scene(Toy()))
    assert len(frames) == 3 and frames[0].shape == (32, 48, 3)
    assert all(tuple(f[16, 12]) == PALETTE["white"] for f in frames)  # the still disc, every frame
    assert [tuple(f[8, 12 + 4 * t]) for t, f in enumerate(frames)] == [PALETTE["cyan"]] * 3  # the mover's centre
    assert tuple(frames[2][8, 12]) == (0, 0, 0)  # it left its first place
