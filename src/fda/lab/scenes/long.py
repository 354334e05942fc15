"""Long benchmark clips: several short motion events strung into one 60–180 s clip, in twins, with ground truth.

Built from the ``motion`` benchmark scenes (:mod:`fda.lab.scenes.bench`): the same palette, shapes, flat background,
object size and 5 px-per-frame speed, so a model trained on the 3 s ``motion`` clips sees familiar frames.
A long clip shows :data:`LONG_OBJECTS` objects on disjoint paths; it holds ``events`` events, each a stretch of
``event_seconds`` during which exactly one object moves, separated by still stretches of random length (every
object at rest at the midpoint of its path).

Keeping a mover in frame for a long event: it goes back and forth along a 20 px path (a triangle wave at 5 px per
frame: centre, one end, the other end, centre; the 3 s clips' 25 px paths leave no room for four objects in 64x64)
for a whole number of periods, so every event starts and ends with the mover at rest at its centre. A period is 8
frames (4 s at 2 fps), so an event lasts a multiple of 4 s at 2 fps (12 s by default). Because events have a fixed
length, a longer clip holds the same events in more stillness (4 events of 12 s: 80 % of a 60 s clip moves, 27 % of
a 180 s one), as a long video spends more of its time between the moments a caption names.

Twins share objects, layout and event timing, and differ only in one event, the *captioned* one: its mover is
object ``a`` in one twin and ``b`` in the other, and neither ``a`` nor ``b`` moves in any other event (those use the
remaining objects). So:

- the **one-event** caption names the captioned event's mover (``the red circle moves``): it is true of its clip and
  false of the twin, whatever the model knows about order;
- the **paragraph** joins one sentence per event in time order (``the red circle moves. the blue square moves.
  ...``; :func:`fda.pipeline.datasets.paragraph`, as ActivityNet's paragraphs are built); the twins' paragraphs
  differ only in the captioned event's sentence. A model with a short text context cuts the paragraph
  (:func:`fda.model.factory.count_truncated`); where the cut drops the captioned sentence the twins' paragraphs
  become the same text.

A long set is a ``folder`` data set (``fda preprocess --captions``): ``video<i>.mp4`` at its root (twins ``video2k``
and ``video2k+1``; the folder layout names a video by its path without extension), ``one_event.csv`` and
``paragraph.csv`` (every clip in the test split, one caption each), and :data:`LONG_META` with per clip its twin,
events (frame spans, mover, sentence), the captioned event, both captions, and per object its box in every frame
(``[x0, y0, x1, y1]``, right/bottom exclusive, like ``fda_synthetic.json``).
"""

import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, List, NamedTuple, Sequence, Tuple

import numpy as np

from fda.files import make_out_dir
from fda.errors import ConfigError, InputError
from fda.lab.scenes.bench import BACKGROUND, STEP, Scene, SceneObject, layout_objects, scene_geometry
from fda.lab.scenes.drawing import PALETTE, SHAPES, check_palette, render_scene
from fda.lab.scenes.encoding import check_size, encode_frames, frame_count
from fda.lab.scenes.msrvtt import encode_all, write_csv, write_text
from fda.pipeline.datasets import paragraph

logger = logging.getLogger(__name__)

LONG_META = "fda_long.json"
CAPTION_FILES = {"one-event": "one_event.csv", "paragraph": "paragraph.csv"}
LONG_OBJECTS = 4  # a, b (the captioned event's mover in each twin) and two objects for the other events
EVENTS = 4  # ActivityNet Captions averages 3.65 events per video
EVENT_SECONDS = 12.0
PATH_FRAMES = 5  # a 20 px path at 64 px (4 steps of 5 px): four of the 3 s clips' 25 px paths rarely fit 64x64


class Event(NamedTuple):
    """One event: frames ``[start, end)`` during which object ``mover`` (an index into the scene's objects) moves."""

    start: int
    end: int
    mover: int


@dataclass(frozen=True)
class LongScene(Scene):
    """A long clip: a :class:`~fda.lab.scenes.bench.Scene` whose objects move only during their events, back and forth.

    ``objects[i].moves`` says whether object ``i`` moves in some event, ``captioned`` whether it is the captioned
    event's mover.
    """

    events: Tuple[Event, ...] = ()
    captioned_event: int = 0

    @property
    def period(self) -> int:
        """Frames of one there-and-back trip along the path (the mover is at its centre every ``period`` frames)."""
        return period_frames(self.size, self.travel)

    def position(self, obj: SceneObject, t: int) -> np.ndarray:
        """``(x, y)`` centre of ``obj`` in frame ``t``: on a triangle wave during its events, else its centre."""
        centre = np.asarray(obj.centre, np.float64)
        index = self.objects.index(obj)
        for ev in self.events:
            if ev.mover == index and ev.start <= t < ev.end:
                step = STEP * min(self.size) / 64.0
                half = self.travel / 2.0
                u = ((t - ev.start) * step) % (4 * half)  # distance travelled within this period
                along = u if u <= half else (2 * half - u if u <= 3 * half else u - 4 * half)
                offset = np.zeros(2)
                offset[obj.axis] = obj.sign * along
                return centre + offset
        return centre

    def sentences(self) -> List[str]:
        """One plain sentence per event, in time order (``the red circle moves.``)."""
        return [f"the {self.objects[ev.mover].colour} {self.objects[ev.mover].shape} moves." for ev in self.events]

    def caption(self, kind: str) -> str:
        """The clip's ``one-event`` caption (its captioned event's mover) or its ``paragraph`` of every event."""
        if kind == "one-event":
            return self.sentences()[self.captioned_event].rstrip(".")
        if kind == "paragraph":
            return paragraph(self.sentences())
        raise ConfigError(f"caption kind must be one of {', '.join(CAPTION_FILES)}, got {kind!r}")

    def truth(self) -> Dict[str, Any]:
        """The scene's ground truth plus its events (frame spans, mover's colour and shape, sentence)."""
        out = super().truth()
        out["events"] = [{"start": ev.start, "end": ev.end, "mover": ev.mover, "sentence": s}
                         for ev, s in zip(self.events, self.sentences())]
        out["captioned_event"] = self.captioned_event
        return out


def period_frames(size: Tuple[int, int], travel: float) -> int:
    """Frames of one there-and-back trip along a path of ``travel`` px at :data:`fda.lab.scenes.bench.STEP` (scaled)."""
    return int(round(2 * travel / (STEP * min(size) / 64.0)))


def event_frames(fps: int, event_seconds: float, period: int) -> int:
    """An event's frame count: ``event_seconds`` rounded to whole periods, at least one."""
    return max(1, int(round(fps * event_seconds / period))) * period


def long_twins(rng: np.random.Generator, size: Tuple[int, int], frames: int, events: int = EVENTS,
               event_len: int = 20) -> Tuple[LongScene, LongScene]:
    """Two long scenes with the same objects, layout and event timing that differ only in the captioned event's mover.

    Args:
        rng: the generator (layout, colours, shapes, timing, movers).
        size: ``(width, height)``.
        frames: frames in the clip.
        events: events per clip (>= 1).
        event_len: frames per event (a multiple of the path's period).

    Raises:
        ConfigError: the events do not fit the clip.
    """
    if events < 1 or events * event_len > frames:
        raise ConfigError(f"{events} events of {event_len} frames do not fit a clip of {frames} frames: use fewer "
                          "or shorter events (--events, --event-seconds) or longer clips")
    radius, travel = scene_geometry(size, PATH_FRAMES)
    slots = layout_objects(rng, size, radius, travel, count=LONG_OBJECTS)
    names = [str(n) for n in rng.permutation(list(PALETTE))][:LONG_OBJECTS]
    shapes = [SHAPES[int(rng.integers(len(SHAPES)))] for _ in range(LONG_OBJECTS)]
    # Still stretches: the frames no event uses, cut into events + 1 gaps at random (a gap may be empty).
    gaps = rng.multinomial(frames - events * event_len, np.full(events + 1, 1.0 / (events + 1)))
    starts = np.cumsum(np.concatenate([[gaps[0]], gaps[1:-1] + event_len]))
    captioned = int(rng.integers(events))
    others = [2 + int(rng.integers(LONG_OBJECTS - 2)) for _ in range(events)]  # objects 2.. move in the other events

    def scene(mover: int) -> LongScene:
        movers = [mover if k == captioned else others[k] for k in range(events)]
        objs = tuple(SceneObject(names[i], shapes[i], slots[i][0], slots[i][1], slots[i][2], i in movers, i == mover)
                     for i in range(LONG_OBJECTS))
        evs = tuple(Event(int(s), int(s) + event_len, m) for s, m in zip(starts, movers))
        return LongScene(objs, radius, travel, size, frames, events=evs, captioned_event=captioned)

    return scene(0), scene(1)


def make_long_set(root: str, *, clips: int = 64, seconds: float = 60.0, seed: int = 0, events: int = EVENTS,
                  event_seconds: float = EVENT_SECONDS, size: Tuple[int, int] = (64, 64), fps: int = 2
                  ) -> Dict[str, Any]:
    """Write a long set (module docstring): videos, both caption files and :data:`LONG_META`; returns its summary.

    Args:
        root: output folder (created; must be empty or an earlier long set, whose videos are replaced).
        clips: clips (even: twins), all in the test split.
        seconds: clip length.
        seed: data-set seed (the same seed gives the same scenes at every length but the timing).
        events: events per clip.
        event_seconds: length of an event, rounded to whole periods of the path (5 s at 2 fps).
        size: ``(width, height)``, both even.
        fps: frame rate.

    Raises:
        ConfigError: an odd clip count, a size that cannot hold the paths, events that do not fit the clip.
        InputError: ``root`` holds something else.
    """
    if not (isinstance(clips, int) and clips >= 2 and clips % 2 == 0):
        raise ConfigError(f"clips must be an even integer >= 2 (clips come in twins), got {clips!r}")
    check_palette(PALETTE, BACKGROUND)
    w, h = check_size(size)
    frames = frame_count(fps, seconds)
    _, travel = scene_geometry((w, h), PATH_FRAMES)
    event_len = event_frames(fps, event_seconds, period_frames((w, h), travel))
    rng = np.random.default_rng([seed, 29])
    scenes: List[LongScene] = []
    for _ in range(clips // 2):
        scenes.extend(long_twins(rng, (w, h), frames, events, event_len))
    meta_path = os.path.join(root, LONG_META)
    if os.path.isdir(root) and os.listdir(root) and not os.path.isfile(meta_path):
        raise InputError(f"{root} is not empty and holds no {LONG_META}: choose a new output folder")
    make_out_dir(root, "OUT_DIR")
    ids = [f"video{i}" for i in range(clips)]

    def render(i: int) -> int:
        return encode_frames(os.path.join(root, f"{ids[i]}.mp4"), render_scene(scenes[i]), size=(w, h),
                             fps=fps)

    counts = encode_all(render, clips)
    for kind, name in CAPTION_FILES.items():
        write_csv(root, name, ["video", "caption", "split"],
                  ([f"{v}.mp4", sc.caption(kind), "test"] for v, sc in zip(ids, scenes)))
    summary = {"root": os.path.abspath(root), "kind": "long", "seed": seed, "videos": clips, "seconds": seconds,
               "fps": fps, "size": [w, h], "frames_per_video": counts[0], "events": events,
               "event_seconds": event_seconds, "event_frames": event_len, "objects": LONG_OBJECTS}
    records = [{"video_id": v, "twin": f"video{i ^ 1}", "frames": counts[i],
                "captions": {k: sc.caption(k) for k in CAPTION_FILES}, **sc.truth()}
               for i, (v, sc) in enumerate(zip(ids, scenes))]
    write_text(root, LONG_META, json.dumps({**summary, "clips": records}))
    logger.info("wrote %d long clips (%g s, %d events of %d frames) to %s", clips, seconds, events, event_len, root)
    return summary


def load_long_clips(root: str) -> Dict[str, Dict[str, Any]]:
    """Ground truth per video id from a long set's :data:`LONG_META`, each with the set's ``size``.

    The records have the keys :func:`fda.lab.motion_bench.evaluate_run` and ``mask_truth_scores`` read (``twin``;
    ``objects`` with ``moves`` and per-frame ``boxes``).
    """
    with open(os.path.join(root, LONG_META), "r", encoding="utf-8") as fh:
        meta = json.load(fh)
    return {c["video_id"]: {**c, "size": meta["size"]} for c in meta["clips"]}


def event_hits(clip: Dict[str, Any], indices: Sequence[int], partners: Sequence[int]) -> List[int]:
    """Per event of ``clip``, how many sampled frames see its mover move (its box differs from the partner frame's).

    These are the frames whose frame-difference mask can point at the event's mover.
    """
    out = []
    for ev in clip["events"]:
        boxes = clip["objects"][ev["mover"]]["boxes"]
        out.append(sum(1 for i, p in zip(indices, partners)
                       if ev["start"] <= min(int(i), int(p)) < ev["end"] and boxes[int(i)] != boxes[int(p)]))
    return out


def cut_paragraphs_differ(clip: Dict[str, Any], twin: Dict[str, Any], context_length: int, tokenizer: Any) -> bool:
    """Whether a clip's and its twin's paragraphs still differ once cut to ``context_length`` tokens.

    They differ from the captioned event's sentence on, so a cut before its colour word makes them the same text
    (``tokenizer.encode`` gives BPE tokens without start and end; the cut keeps ``context_length - 2`` of them).
    """
    keep = context_length - 2
    return (tokenizer.encode(clip["captions"]["paragraph"])[:keep]
            != tokenizer.encode(twin["captions"]["paragraph"])[:keep])


def one_event_true_of(clips: Dict[str, Dict[str, Any]]) -> Dict[str, List[str]]:
    """Per video id, the clips of the set (itself included) its one-event caption is true of.

    A one-event caption names a colour and a shape; it is true of every clip in which such an object moves in some
    event, so R@1 cannot beat ``mean(1 / count)`` even for a model that ranks exactly those clips first.
    """
    def moved(clip: Dict[str, Any]) -> set:
        return {(clip["objects"][e["mover"]]["colour"], clip["objects"][e["mover"]]["shape"]) for e in clip["events"]}

    movers = {v: moved(c) for v, c in clips.items()}
    out = {}
    for v, c in clips.items():
        obj = c["objects"][c["events"][c["captioned_event"]]["mover"]]
        out[v] = [w for w, m in movers.items() if (obj["colour"], obj["shape"]) in m]
    return out
