"""Long benchmark clips: event boundaries, twins that differ only in the captioned event, boxes in frame, paragraphs."""

import csv
import json
import os

import cv2
import numpy as np
import pytest

from fda.errors import ConfigError
from fda.lab.scenes import (CAPTION_FILES, LONG_META, LONG_OBJECTS, cut_paragraphs_differ, event_frames, event_hits,
                            load_long_clips, long_twins, make_long_set, one_event_true_of, period_frames,
                            render_scene, shape_extent)
from fda.lab.motion_bench import ranking_row
from fda.model.factory import count_truncated, get_tokenizer
from fda.pipeline.datasets import load_dataset
from fda.pipeline.sampling import partner_indices, sample_frame_indices

SIZE = (64, 64)
FRAMES = 120  # 60 s at 2 fps


def _frame(path, t):
    """Frame ``t`` of a video, uint8 [H, W, 3] RGB."""
    cap = cv2.VideoCapture(path)
    for _ in range(t + 1):
        ok, frame = cap.read()
        assert ok
    cap.release()
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def _twins(n=12, seed=0, frames=FRAMES, events=4, event_len=24):
    rng = np.random.default_rng(seed)
    return [long_twins(rng, SIZE, frames, events, event_len) for _ in range(n)]


def test_an_event_is_whole_periods_of_the_path():
    assert period_frames(SIZE, 20.0) == 8  # 20 px there and back at 5 px per frame
    assert period_frames((128, 128), 40.0) == 8  # the speed scales with the frame
    assert event_frames(2, 12.0, 8) == 24 and event_frames(2, 1.0, 8) == 8  # at least one period


def test_event_boundaries():
    for a, b in _twins():
        assert [(e.start, e.end) for e in a.events] == [(e.start, e.end) for e in b.events]  # shared timing
        ends = [0] + [e.end for e in a.events]
        for ev, prev_end in zip(a.events, ends):
            assert ev.end - ev.start == 24 and ev.start >= prev_end and ev.end <= FRAMES  # ordered, disjoint, inside
            obj = a.objects[ev.mover]
            centre = np.asarray(obj.centre)
            # At rest at its centre just before and at the end of its event, moving at every frame in between.
            assert np.allclose(a.position(obj, ev.start), centre) and np.allclose(a.position(obj, ev.end), centre)
            steps = [np.abs(a.position(obj, t + 1) - a.position(obj, t)).sum() for t in range(ev.start, ev.end)]
            assert np.allclose(steps, 5.0)
        moving = {t for ev in a.events for t in range(ev.start, ev.end)}
        for t in set(range(FRAMES)) - moving:  # nobody moves between events
            for obj in a.objects:
                assert np.allclose(a.position(obj, t), obj.centre)


def test_twins_differ_only_in_the_captioned_event():
    for a, b in _twins(n=6):
        k = a.captioned_event
        assert k == b.captioned_event and a.events[k].mover != b.events[k].mover
        assert [e for i, e in enumerate(a.events) if i != k] == [e for i, e in enumerate(b.events) if i != k]
        mover_a, mover_b = a.events[k].mover, b.events[k].mover
        for i, ev in enumerate(a.events):  # neither captioned mover moves in another event
            assert i == k or ev.mover not in (mover_a, mover_b)
        assert [(o.colour, o.shape, o.centre) for o in a.objects] == [(o.colour, o.shape, o.centre) for o in b.objects]
        span = range(a.events[k].start, a.events[k].end)
        differ = [t for t, (fa, fb) in enumerate(zip(render_scene(a), render_scene(b))) if not np.array_equal(fa, fb)]
        assert differ and set(differ) <= set(span)  # frames match byte for byte outside the captioned event
        sa, sb = a.sentences(), b.sentences()
        assert [i for i in range(len(sa)) if sa[i] != sb[i]] == [k]
        assert a.caption("one-event") == sa[k].rstrip(".") and a.caption("one-event") != b.caption("one-event")
        assert a.objects[mover_a].captioned and b.objects[mover_b].captioned
        assert sum(o.captioned for o in a.objects) == 1 and len(a.objects) == LONG_OBJECTS


def test_ground_truth_boxes_stay_in_frame():
    w, h = SIZE
    for a, b in _twins(n=8, seed=3):
        for scene in (a, b):
            for obj in scene.objects:
                left, top, right, bottom = shape_extent(obj.shape, scene.radius)
                for t in range(FRAMES):  # unclipped: the shape itself never leaves the frame
                    x, y = scene.position(obj, t)
                    assert 0 <= x + left and x + right <= w and 0 <= y + top and y + bottom <= h
            truth = scene.truth()
            for obj in truth["objects"]:
                assert len(obj["boxes"]) == FRAMES
                for x0, y0, x1, y1 in obj["boxes"]:
                    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            assert [(e["start"], e["end"], e["mover"]) for e in truth["events"]] == [
                (e.start, e.end, e.mover) for e in scene.events]


def test_paragraph_construction_and_cut():
    a, b = _twins(n=1)[0]
    para = a.caption("paragraph")
    assert para == " ".join(a.sentences()) and para.count(".") == len(a.events)
    with pytest.raises(ConfigError):
        a.caption("summary")
    clip = {"captions": {"paragraph": para}}
    twin = {"captions": {"paragraph": b.caption("paragraph")}}
    tok = get_tokenizer(77)
    assert cut_paragraphs_differ(clip, twin, 77, tok)  # nothing cut: they differ
    k = a.captioned_event
    before = len(tok.encode(" ".join(a.sentences()[:k]))) if k else 0
    assert not cut_paragraphs_differ(clip, twin, before + 2 + 1, tok)  # cut at "the": the colour word is gone
    assert cut_paragraphs_differ(clip, twin, before + 2 + 2, tok)  # the colour word is in
    assert count_truncated([para], 16) == 1 and count_truncated([para], 77) == 0


def test_events_that_do_not_fit_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="do not fit"):
        long_twins(np.random.default_rng(0), SIZE, 40, 4, 24)
    with pytest.raises(ConfigError, match="even"):
        make_long_set(str(tmp_path / "x"), clips=3, seconds=60)


def test_event_hits_counts_frames_whose_difference_sees_the_mover():
    boxes = [[0, 0, 4, 4]] * 10 + [[t, 0, t + 4, 4] for t in range(1, 6)] + [[0, 0, 4, 4]] * 5
    clip = {"events": [{"start": 10, "end": 15, "mover": 0}], "objects": [{"boxes": boxes}]}
    # frame 9 -> 10: both at rest; 10 -> 11 and 14 -> 15 move; 16 -> 17 at rest again.
    assert event_hits(clip, [9, 10, 14, 16], [10, 11, 15, 17]) == [2]


def test_make_long_set_writes_a_folder_set(tmp_path):
    root = str(tmp_path / "long")
    summary = make_long_set(root, clips=2, seconds=20, events=2, event_seconds=4)
    assert summary["frames_per_video"] == 40 and summary["event_frames"] == 8 and summary["videos"] == 2
    with open(os.path.join(root, LONG_META), encoding="utf-8") as fh:
        assert json.load(fh)["videos"] == 2  # the summary's count survives beside the per-clip records
    clips = load_long_clips(root)
    assert set(clips) == {"video0", "video1"} and clips["video0"]["twin"] == "video1"
    assert os.path.isfile(os.path.join(root, LONG_META))
    for kind, name in CAPTION_FILES.items():
        with open(os.path.join(root, name), newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        assert [r["caption"] for r in rows] == [clips[f"video{i}"]["captions"][kind] for i in range(2)]
        assert {r["split"] for r in rows} == {"test"}
        items = load_dataset(root, "folder", captions=os.path.join(root, name)).items["test"]
        assert sorted(i.video_id for i in items) == ["video0", "video1"]
    # The encoded clip shows the truth: a captioned event's frame differs from its twin's, a frame before none does.
    c = clips["video0"]
    ev = c["events"][c["captioned_event"]]
    idx = sample_frame_indices(c["frames"], 12)
    assert sum(event_hits(c, idx, partner_indices(idx, c["frames"]))) >= 1
    mid = (ev["start"] + ev["end"]) // 2 - 1
    f0, f1 = (_frame(os.path.join(root, f"{v}.mp4"), mid).astype(int) for v in ("video0", "video1"))
    assert np.abs(f0 - f1).max() > 100
    g0, g1 = (_frame(os.path.join(root, f"{v}.mp4"), ev["start"]).astype(int) for v in ("video0", "video1"))
    assert np.abs(g0 - g1).max() < 30  # both at rest at the event's first frame (H.264 noise aside)


def test_ranking_row_on_a_known_matrix():
    sim = np.eye(4) + 0.1
    sim[0, 1] = 2.0  # caption 0 prefers its twin, video 1
    row = ranking_row(sim, [1, 0, 3, 2])
    assert row["twin_t2v"] == 75.0 and row["t2v_R@1"] == 75.0 and row["v2t_R@1"] == 75.0


def test_one_event_true_of_counts_clips_where_the_named_object_moves():
    def clip(named, others):
        objs = [{"colour": c, "shape": s} for c, s in [named] + others]
        return {"objects": objs, "captioned_event": 0,
                "events": [{"mover": i} for i in range(len(objs))]}

    clips = {"a": clip(("red", "circle"), [("blue", "square")]), "b": clip(("blue", "square"), [("red", "circle")]),
             "c": clip(("red", "square"), [])}
    assert one_event_true_of(clips) == {"a": ["a", "b"], "b": ["a", "b"], "c": ["c"]}  # colour and shape must match
