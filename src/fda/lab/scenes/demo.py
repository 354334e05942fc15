"""The demo set (``fda generate --kind demo``): clips the captions tell apart by colour, shape and motion.

Every clip is a textured, static background with one *captioned* object (a coloured square, circle or triangle
that moves left, right, up or down, or stays still) and a few distractor objects of other colours and shapes, in
the colours :data:`fda.lab.scenes.drawing.DEMO_COLOURS` of the one palette. A clip is a scene description
(:class:`DemoScene`) drawn by :func:`fda.lab.scenes.drawing.render_scene` and piped to the ffmpeg binary
(:func:`fda.lab.scenes.encoding.encode_frames`: libx264, yuv420p, ``.mp4`` by default), so decoding them exercises
the same code paths as real data. Everything is deterministic for a seed: each video draws from
``np.random.default_rng([seed, index])``.

:func:`make_msrvtt_demo` writes a set in the MSR-VTT layout (:mod:`fda.lab.scenes.msrvtt`): every video has its own
colour+shape+motion (as long as the combinations last), and the captions are paraphrases naming all three.
"""

import logging
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple

import cv2
import numpy as np

from fda.errors import ConfigError
from fda.lab.scenes.drawing import DEMO_COLOURS, SHAPES, SYNONYMS, render_scene
from fda.lab.scenes.encoding import check_size, encode_frames, frame_count
from fda.lab.scenes.msrvtt import check_counts, write_msrvtt_set

logger = logging.getLogger(__name__)

MOTIONS = ("left", "right", "up", "down", "static")
_MOVE_WORDS = {  # (adverb phrase, verb, from, to)
    "right": ("to the right", "right", "left", "right"),
    "left": ("to the left", "left", "right", "left"),
    "up": ("upwards", "up", "bottom", "top"),
    "down": ("downwards", "down", "top", "bottom"),
}


@dataclass(frozen=True)
class ObjectSpec:
    """One drawn object: colour (of :data:`DEMO_COLOURS`), shape (:data:`SHAPES`), motion (:data:`MOTIONS`)."""

    colour: str
    shape: str
    motion: str = "static"

    def __post_init__(self) -> None:
        for name, value, choices in (("colour", self.colour, DEMO_COLOURS), ("shape", self.shape, SHAPES),
                                     ("motion", self.motion, MOTIONS)):
            if value not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


@dataclass(frozen=True)
class ClipSpec:
    """What one clip shows.

    Attributes:
        colour: colour of the captioned object.
        shape: shape of the captioned object.
        motion: motion of the captioned object (``static`` or a direction).
        distractors: the other objects, drawn underneath the captioned one. ``None``: two static ones of other
            colours and shapes, drawn from the seed. Each must differ from the captioned object in colour.
    """

    colour: str
    shape: str
    motion: str = "static"
    distractors: Optional[Tuple[ObjectSpec, ...]] = None

    def __post_init__(self) -> None:
        ObjectSpec(self.colour, self.shape, self.motion)  # validates
        for d in self.distractors or ():
            if d.colour == self.colour:
                raise ConfigError(f"a distractor shares the captioned object's colour {self.colour!r}: the caption "
                                  f"would be ambiguous; pick another colour")

    @property
    def target(self) -> ObjectSpec:
        """The captioned object."""
        return ObjectSpec(self.colour, self.shape, self.motion)


# --------------------------------------------------------------------------------------------------------------
# Layout and drawing


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A seeded, low-saturation texture: uint8 [H, W, 3] RGB in roughly 60..170."""
    coarse = rng.uniform(70, 160, size=(h // 8 + 2, w // 8 + 2, 1)).astype(np.float32)
    tint = rng.uniform(-12, 12, size=(h // 16 + 2, w // 16 + 2, 3)).astype(np.float32)
    base = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)[..., None]
    base = base + cv2.resize(tint, (w, h), interpolation=cv2.INTER_CUBIC)
    base = base + rng.normal(0, 5, size=(h, w, 1)).astype(np.float32)  # fine grain
    return np.clip(base, 60, 170).astype(np.uint8)


def _radius(w: int, h: int) -> int:
    return max(4, int(round(min(w, h) * 0.1)))


def _path(rng: np.random.Generator, motion: str, w: int, h: int, r: int) -> Tuple[np.ndarray, np.ndarray]:
    """Start and end centre (x, y) of an object; it travels 60 % of the free span along its axis."""
    lo = np.array([r + 1, r + 1], dtype=np.float64)
    hi = np.array([w - r - 1, h - r - 1], dtype=np.float64)
    start = rng.uniform(lo, hi)
    if motion == "static":
        return start, start.copy()
    axis = 0 if motion in ("left", "right") else 1
    travel = 0.6 * (hi[axis] - lo[axis])
    a = rng.uniform(lo[axis], hi[axis] - travel)
    start[axis] = a
    end = start.copy()
    end[axis] = a + travel
    return (end, start) if motion in ("left", "up") else (start, end)


def _sweep_box(p0: np.ndarray, p1: np.ndarray, r: int, margin: int = 2) -> Tuple[float, float, float, float]:
    return (min(p0[0], p1[0]) - r - margin, min(p0[1], p1[1]) - r - margin,
            max(p0[0], p1[0]) + r + margin, max(p0[1], p1[1]) + r + margin)


def _overlap(a: Tuple[float, ...], b: Tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _pick_distractors(rng: np.random.Generator, spec: ClipSpec, n: int) -> Tuple[ObjectSpec, ...]:
    colours = [c for c in DEMO_COLOURS if c != spec.colour]
    shapes = [s for s in SHAPES if s != spec.shape] or list(SHAPES)
    picked = rng.permutation(len(colours))[:n]
    return tuple(ObjectSpec(colours[i], shapes[j % len(shapes)]) for j, i in enumerate(picked))


def layout_clip(spec: ClipSpec, *, size: Tuple[int, int] = (160, 120), seed: int = 0) -> Dict[str, Any]:
    """Where each object of a clip is: background seed, radius, and per object its start and end centre.

    Args:
        spec: the clip.
        size: ``(width, height)`` in pixels.
        seed: seed of the background, the distractor choice and the positions.

    Returns:
        ``{"radius", "objects": [{"colour", "shape", "motion", "start": [x, y], "end": [x, y], "captioned"}]}``;
        the captioned object is last (drawn on top).
    """
    w, h = size
    rng = np.random.default_rng([seed, 1])
    r = _radius(w, h)
    distractors = spec.distractors if spec.distractors is not None else _pick_distractors(rng, spec, 2)
    objects: List[Dict[str, Any]] = []
    boxes: List[Tuple[float, ...]] = []
    for obj, captioned in [(spec.target, True), *((d, False) for d in distractors)]:
        for _ in range(200):  # rejection sampling: keep sweeps apart so nothing hides the captioned object
            p0, p1 = _path(rng, obj.motion, w, h, r)
            box = _sweep_box(p0, p1, r)
            if not any(_overlap(box, b) for b in boxes):
                break
        else:
            logger.debug("no free room for %s %s at %dx%d; it may overlap", obj.colour, obj.shape, w, h)
        boxes.append(box)
        objects.append({**asdict(obj), "start": [round(float(v), 3) for v in p0],
                        "end": [round(float(v), 3) for v in p1], "captioned": captioned})
    objects.append(objects.pop(0))  # draw the captioned object last
    return {"radius": r, "objects": objects}


@dataclass(frozen=True)
class DemoObject:
    """One object of a demo clip: it moves in a straight line from ``start`` (first frame) to ``end`` (last)."""

    colour: str
    shape: str
    start: Tuple[float, float]
    end: Tuple[float, float]


@dataclass(frozen=True)
class DemoScene:
    """A demo clip as a scene description for :func:`fda.lab.scenes.drawing.render_scene`.

    Attributes:
        objects: the objects, captioned one last (on top).
        radius: size of every object.
        size: ``(width, height)``.
        frames: number of frames.
        seed: seed of the textured backdrop.
    """

    objects: Tuple[DemoObject, ...]
    radius: float
    size: Tuple[int, int]
    frames: int
    seed: int = 0
    condition: str = "still"
    cameras: Tuple[Tuple[float, ...], ...] = ()

    @classmethod
    def of(cls, spec: ClipSpec, *, size: Tuple[int, int], frames: int, seed: int) -> "DemoScene":
        """The scene of a clip: the layout of :func:`layout_clip`, ``frames`` long."""
        plan = layout_clip(spec, size=size, seed=seed)
        objects = tuple(DemoObject(o["colour"], o["shape"], tuple(o["start"]), tuple(o["end"]))
                        for o in plan["objects"])
        return cls(objects, plan["radius"], size, frames, seed)

    def position(self, obj: DemoObject, t: int) -> np.ndarray:
        """``(x, y)`` centre of ``obj`` in frame ``t``: linear from its start to its end."""
        a = t / (self.frames - 1) if self.frames > 1 else 0.0
        return (1 - a) * np.array(obj.start) + a * np.array(obj.end)

    def camera(self, t: int) -> np.ndarray:
        """The identity: the demo's camera never moves."""
        return np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])

    def backdrop(self, width: int, height: int) -> np.ndarray:
        """The clip's seeded, low-saturation texture: uint8 [height, width, 3] RGB in roughly 60..170."""
        return _background(np.random.default_rng([self.seed, 0]), width, height)


def render_frames(spec: ClipSpec, *, size: Tuple[int, int] = (160, 120), frames: int = 30,
                  seed: int = 0) -> Iterator[np.ndarray]:
    """The clip's frames, before encoding (its :class:`DemoScene` through ``render_scene``).

    Args:
        spec: the clip.
        size: ``(width, height)`` in pixels.
        frames: number of frames; objects move linearly from their start (first frame) to their end (last).
        seed: as in :func:`layout_clip`.

    Yields:
        uint8 [H, W, 3] RGB frames. Static parts are bit-identical from frame to frame.
    """
    return render_scene(DemoScene.of(spec, size=size, frames=frames, seed=seed))


def render_clip(path: str, spec: ClipSpec, *, size: Tuple[int, int] = (160, 120), fps: int = 10,
                seconds: float = 3, seed: int = 0) -> int:
    """Draw a clip (:func:`render_frames`) and encode it (:func:`fda.lab.scenes.encoding.encode_frames`).

    Args:
        path: output file; its extension chooses the encoder.
        spec: the clip.
        size: ``(width, height)``, both even.
        fps: frame rate.
        seconds: duration.
        seed: see :func:`layout_clip`.

    Returns:
        The number of frames written.

    Raises:
        ConfigError, EnvError: as :func:`fda.lab.scenes.encoding.encode_frames`.
    """
    w, h = check_size(size)
    n = frame_count(fps, seconds)
    return encode_frames(path, render_frames(spec, size=(w, h), frames=n, seed=seed), size=(w, h), fps=fps)


# --------------------------------------------------------------------------------------------------------------
# Captions


def captions_for(spec: ClipSpec, rng: np.random.Generator, n: int, *, mention_motion: bool = True) -> List[str]:
    """``n`` distinct paraphrases naming the captioned object's colour and shape (and motion, if asked).

    The first caption is always the plain one (``a red square moves to the right``); the rest are drawn from a
    template pool by ``rng``; when ``n`` exceeds the pool, captions repeat.
    """
    c, s = spec.colour, spec.shape
    syn = SYNONYMS[s]
    if spec.motion == "static" or not mention_motion:
        still = spec.motion == "static" and mention_motion
        pool = ([f"a {c} {s} stays still", f"a motionless {c} {syn[1]}", f"the {c} {s} does not move",
                 f"a still {c} {syn[2]} among other shapes", f"a {c} {syn[1]} sits in one place"] if still else
                [f"a {c} {s}", f"there is a {c} {s} on the screen", f"a {c} {syn[1]} among other shapes",
                 f"the {c} {s}", f"a {c} {syn[2]} on a textured background"])
    else:
        adv, verb, src, dst = _MOVE_WORDS[spec.motion]
        pool = [f"a {c} {s} moves {adv}", f"a {c} {syn[1]} slides {verb} across the screen",
                f"the {c} {s} is moving {verb}", f"a {c} {syn[2]} travels from the {src} to the {dst}",
                f"a {c} {syn[1]} goes {verb}", f"the {c} {s} drifts {adv} past the other shapes"]
    first, rest = pool[0], [pool[i] for i in rng.permutation(np.arange(1, len(pool)))]
    out = [first, *rest]
    return [out[i % len(out)] for i in range(n)]


def make_msrvtt_demo(root: str, *, n_train: int = 24, n_test: int = 12, seed: int = 0, captions_per_video: int = 5,
                     size: Tuple[int, int] = (160, 120), fps: int = 10, seconds: float = 3) -> Dict[str, Any]:
    """Write a small MSR-VTT-layout demo set whose videos the captions tell apart (colour + shape + motion).

    Test videos get distinct combinations first (while the 6 x 3 x 5 = 90 combinations last), then train videos.

    Args:
        root: output folder (created; must be empty or an earlier synthetic set).
        n_train: training videos (``video0`` ...).
        n_test: test videos (after the training ones), one JSFUSION row each.
        seed: data-set seed.
        captions_per_video: paraphrases per video in ``MSRVTT_data.json``.
        size: ``(width, height)``, both even.
        fps: frame rate.
        seconds: clip length.

    Returns:
        Summary: ``root, kind, seed, size, fps, seconds, train, test, videos, frames_per_video, captions, files``.
    """
    check_counts(n_train, n_test, captions_per_video)
    rng = np.random.default_rng([seed, 7])
    combos = [(c, s, m) for c in DEMO_COLOURS for s in SHAPES for m in MOTIONS]
    order = rng.permutation(len(combos))
    picks = [combos[order[i % len(combos)]] for i in range(n_train + n_test)]
    picks = picks[n_test:] + picks[:n_test]  # test videos took the first (distinct) combinations
    specs = [ClipSpec(c, s, m) for c, s, m in picks]
    captions = [captions_for(sp, rng, captions_per_video) for sp in specs]
    test_pick = [int(rng.integers(captions_per_video)) for _ in range(n_test)]
    w, h = check_size(size)
    seeds = [int(np.random.SeedSequence([seed, i]).generate_state(1)[0]) for i in range(len(specs))]

    def render(path: str, i: int) -> int:
        return render_clip(path, specs[i], size=(w, h), fps=fps, seconds=seconds, seed=seeds[i])

    clips = [{"seed": seeds[i], "captioned": asdict(sp.target), **layout_clip(sp, size=(w, h), seed=seeds[i])}
             for i, sp in enumerate(specs)]
    return write_msrvtt_set(root, len(specs), captions, n_train, render=render, clips=clips, kind="demo", seed=seed,
                            size=(w, h), fps=fps, seconds=seconds, test_pick=test_pick)
