"""The benchmark scenes (``fda generate --kind motion|null|appearance``): a retrieval gain can come only from what
the set varies.

Every clip shows three objects (coloured squares, circles, triangles) on a flat dark background; at most one of
them moves, along a straight path, at :data:`STEP` pixels per frame (at 64 px; scaled with the frame). Clips come in
*twins*: the same objects at the same places, differing only in what the kind varies:

- ``motion``: which object moves. The caption names the mover (``the red circle moves``), so only motion tells
  the twins apart, and frame-difference masks, which point at the mover, should help.
- ``null``: the captioned object's colour. Which object moves is drawn independently of the caption (and is the
  same in both twins), so masks carry nothing about the caption: they should not help.
- ``appearance``: the captioned object's colour; that object stays still and the same distractor moves in both
  twins (the static-object query: the masks point away from what the caption names).

Design rules that keep the benchmark honest (each is checked or tested):

- every colour of the palette (:data:`fda.lab.scenes.drawing.PALETTE`) is at least
  :data:`fda.lab.scenes.drawing.MIN_CONTRAST` grey levels from the background
  (:func:`fda.lab.scenes.drawing.check_palette`), so a tau-25 frame difference sees every mover;
- the layout is drawn before roles are given, and the slots are shuffled, so where an object sits says nothing
  about whether it is captioned or moves; a static object sits at the midpoint of the path it would travel, so
  its time-averaged position equals a mover's;
- square frames by default, objects never leave the frame, and paths never cross (sweep boxes are disjoint).

Conditions (``condition``) put the same scenes through what real footage does to frame differences: ``pan``, ``zoom``
and ``shake`` move the camera over a textured, real-image-like background; ``flicker`` brightens every other frame by
:data:`fda.lab.scenes.drawing.FLICKER` grey levels; ``noise`` adds Gaussian sensor noise; ``compression`` encodes at CRF
40. Every condition but ``still`` (the default: a static camera over the flat background) uses the textured background:
smooth blobs plus sharp-edged patches (the edges a moving camera lights up) whose grey levels stay within
:data:`TEXTURE_RANGE`, around the flat background's 40, so every colour stays at least 50 grey levels from the texture's
mean and more than tau above its brightest pixel (:data:`TEXTURE_CONTRAST`).

A :class:`Scene` is a scene description drawn by :func:`fda.lab.scenes.drawing.render_scene`; :func:`make_bench_set`
writes a set in the MSR-VTT layout (:mod:`fda.lab.scenes.msrvtt`). Ground truth goes into the set's
``fda_synthetic.json``: per clip its twin, and per object colour, shape, role and its bounding box in every frame
(pixels of the generated frame, ``[x0, y0, x1, y1]``, right/bottom exclusive).
"""

import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

import cv2
import numpy as np

from fda.errors import ConfigError
from fda.lab.config import BENCH_KINDS, SCENE_CONDITIONS
from fda.lab.scenes.drawing import PALETTE, SHAPES, SYNONYMS, check_palette, render_scene, shape_extent
from fda.lab.scenes.encoding import check_size, encode_frames, frame_count
from fda.lab.scenes.msrvtt import check_counts, write_msrvtt_set

logger = logging.getLogger(__name__)

BACKGROUND: Tuple[int, int, int] = (40, 40, 40)
STEP = 5.0  # pixels per frame at a 64 px short side
OBJECTS = 3
DEFAULT_SIZE = (64, 64)
DEFAULT_FPS = 2  # 3 s at 2 fps: 6 frames, a 25 px path at 64 px
TEXTURE_RANGE = (10, 70)  # grey levels of the texture, around the flat background's 40
TEXTURE_CONTRAST = 26.0  # every colour stays above tau 25 over the texture's brightest level
PAN = 3.0  # camera pan, px per frame at 64 px
ZOOM = 0.06  # zoom change per frame
SHAKE = 4.0  # camera jitter, px at 64 px
HEAVY_CRF = 40


@dataclass(frozen=True)
class SceneObject:
    """One object of a scene.

    Attributes:
        colour: a palette name.
        shape: one of :data:`fda.lab.scenes.drawing.SHAPES`.
        centre: ``(x, y)`` midpoint of its path (where it sits if it does not move).
        axis: 0 for a horizontal path, 1 for a vertical one.
        sign: +1 (right/down) or -1 (left/up).
        moves: whether it moves.
        captioned: whether the captions name it.
    """

    colour: str
    shape: str
    centre: Tuple[float, float]
    axis: int
    sign: int
    moves: bool
    captioned: bool


@dataclass(frozen=True)
class Scene:
    """A clip: its objects, their size and path length, the frame size and count."""

    objects: Tuple[SceneObject, ...]
    radius: float
    travel: float
    size: Tuple[int, int]
    frames: int
    condition: str = "still"
    cameras: Tuple[Tuple[float, ...], ...] = ()  # per frame, the 2x3 scene -> frame matrix (row-major); () = identity
    seed: int = 0  # texture and noise seed

    def position(self, obj: SceneObject, t: int) -> np.ndarray:
        """``(x, y)`` centre of ``obj`` in frame ``t``: linear from one end of its path to the other."""
        centre = np.asarray(obj.centre, np.float64)
        if not obj.moves or self.frames < 2:
            return centre
        a = t / (self.frames - 1) - 0.5
        offset = np.zeros(2)
        offset[obj.axis] = obj.sign * a * self.travel
        return centre + offset

    def camera(self, t: int) -> np.ndarray:
        """The 2x3 matrix mapping scene coordinates to frame ``t``'s pixels (identity for a static camera)."""
        if not self.cameras:
            return np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        return np.asarray(self.cameras[t], np.float64).reshape(2, 3)

    def box(self, obj: SceneObject, t: int) -> List[int]:
        """``[x0, y0, x1, y1]`` integer pixel box holding every pixel ``obj`` touches in frame ``t`` (clipped)."""
        x, y = self.position(obj, t)
        left, top, right, bottom = shape_extent(obj.shape, self.radius)
        w, h = self.size
        if self.cameras:  # the box's corners through the camera, then their bounding box
            corners = np.array([[x + left, y + top, 1], [x + right, y + top, 1], [x + left, y + bottom, 1],
                                [x + right, y + bottom, 1]])
            mapped = corners @ self.camera(t).T
            (x0, y0), (x1, y1) = mapped.min(axis=0), mapped.max(axis=0)
            return [max(0, int(np.floor(x0)) - 1), max(0, int(np.floor(y0)) - 1),
                    min(w, int(np.ceil(x1)) + 1), min(h, int(np.ceil(y1)) + 1)]
        # Anti-aliasing can touch the pixel that holds the exact edge: floor/ceil plus one pixel of margin.
        return [max(0, int(np.floor(x + left)) - 1), max(0, int(np.floor(y + top)) - 1),
                min(w, int(np.ceil(x + right)) + 1), min(h, int(np.ceil(y + bottom)) + 1)]

    def backdrop(self, width: int, height: int) -> np.ndarray:
        """The flat :data:`BACKGROUND` for ``still``, else the seeded texture (:data:`TEXTURE_RANGE`)."""
        if self.condition == "still":
            background = np.empty((height, width, 3), np.uint8)
            background[:] = BACKGROUND
            return background
        return _texture(np.random.default_rng([self.seed, 5]), width, height)

    def truth(self) -> Dict[str, Any]:
        """JSON-ready ground truth: radius, travel, and per object its role and box in every frame."""
        return {"radius": round(self.radius, 3), "travel": round(self.travel, 3), "condition": self.condition,
                "cameras": [[round(v, 4) for v in c] for c in self.cameras], "objects": [
            {"colour": o.colour, "shape": o.shape, "rgb": list(PALETTE[o.colour]),
             "centre": [round(v, 3) for v in o.centre], "axis": "xy"[o.axis], "sign": o.sign, "moves": o.moves,
             "captioned": o.captioned, "boxes": [self.box(o, t) for t in range(self.frames)]}
            for o in self.objects]}


def _texture(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A real-image-like grey texture (coarse blobs plus fine detail), uint8 [H, W, 3] within TEXTURE_RANGE."""
    lo, hi = TEXTURE_RANGE
    layers = np.zeros((h, w), np.float32)
    for cell, weight in ((16, 0.3), (6, 0.3), (3, 0.4)):
        noise = rng.random((h // cell + 2, w // cell + 2)).astype(np.float32)
        layers += weight * cv2.resize(noise, (w + 2 * cell, h + 2 * cell), interpolation=cv2.INTER_CUBIC)[
            cell:cell + h, cell:cell + w]
    span = layers.max() - layers.min()
    grey = lo + (hi - lo) * (layers - layers.min()) / (span if span > 0 else 1.0)
    # Sharp-edged patches, like the things in a room, give the edges a moving camera lights up.
    for _ in range(max(8, w * h // 60)):
        x, y = rng.integers(0, w), rng.integers(0, h)
        a, b = rng.integers(2, max(3, min(w, h) // 8), size=2)
        level = float(lo if rng.random() < 0.5 else hi)  # about 30 grey levels from the mean: edges above tau
        if rng.random() < 0.5:
            cv2.rectangle(grey, (int(x - a), int(y - b)), (int(x + a), int(y + b)), level, -1)
        else:
            cv2.ellipse(grey, (int(x), int(y)), (int(a), int(b)), 0, 0, 360, level, -1)
    grey = cv2.GaussianBlur(grey, (3, 3), 0.6)
    return np.repeat(np.clip(grey, lo, hi).round().astype(np.uint8)[..., None], 3, axis=2)


def camera_path(rng: np.random.Generator, condition: str, size: Tuple[int, int],
                frames: int) -> Tuple[Tuple[float, ...], ...]:
    """Per frame, the scene -> frame matrix of a ``pan``, ``zoom`` or ``shake`` camera (``()`` otherwise)."""
    if condition not in ("pan", "zoom", "shake"):
        return ()
    w, h = size
    k = min(w, h) / 64.0
    mid = (frames - 1) / 2
    out = []
    angle = rng.uniform(0, 2 * np.pi)
    zoom_sign = rng.choice((-1.0, 1.0))
    for t in range(frames):
        if condition == "pan":  # the view slides along a random direction; the content moves the other way
            m = np.array([[1.0, 0.0, -(t - mid) * PAN * k * np.cos(angle)],
                          [0.0, 1.0, -(t - mid) * PAN * k * np.sin(angle)]])
        elif condition == "zoom":  # about the frame centre
            s = 1.0 + zoom_sign * ZOOM * (t - mid)
            m = np.array([[s, 0.0, (1 - s) * w / 2], [0.0, s, (1 - s) * h / 2]])
        else:  # shake: a small random shift and rotation per frame
            a = np.radians(rng.uniform(-1.0, 1.0))
            dx, dy = rng.uniform(-SHAKE * k, SHAKE * k, size=2)
            c, s_ = np.cos(a), np.sin(a)
            m = np.array([[c, -s_, (1 - c) * w / 2 + s_ * h / 2 + dx], [s_, c, (1 - c) * h / 2 - s_ * w / 2 + dy]])
        out.append(tuple(float(v) for v in m.ravel()))
    return tuple(out)


def scene_geometry(size: Tuple[int, int], frames: int) -> Tuple[float, float]:
    """``(radius, travel)`` for a frame size and frame count.

    Raises:
        ConfigError: the path does not fit the frame (too many frames for the size).
    """
    short = min(size)
    radius = 0.1 * short
    travel = STEP * short / 64.0 * max(1, frames - 1)
    reach = travel + 2 * 1.15 * radius + 6
    if reach > short:
        most = int((short - 2 * 1.15 * radius - 6) / (STEP * short / 64.0)) + 1
        raise ConfigError(f"{frames} frames at {STEP:g} px per frame make a {travel:.0f} px path that does not fit "
                          f"a {short} px frame: use at most {most} frames (--fps x --seconds), e.g. --fps 2 "
                          f"--seconds 3")
    return radius, travel


def layout_objects(rng: np.random.Generator, size: Tuple[int, int], radius: float,
                   travel: float, count: int = OBJECTS) -> List[Tuple[Tuple[float, float], int, int]]:
    """Disjoint paths for ``count`` objects: ``(centre, axis, sign)`` each, in random slot order.

    Objects are placed one after another, each at the first of 64 uniform candidates whose sweep box misses the
    boxes already placed; a layout that gets stuck is drawn again.
    """
    w, h = size
    reach = 1.15 * radius + 2  # every shape fits in this half-width, plus a margin
    tries = 64
    for _ in range(1000):
        placed: List[Tuple[Tuple[float, float], int, int]] = []
        boxes = np.zeros((0, 4))
        for _ in range(count):
            axis = rng.integers(2, size=tries)
            sign = rng.choice((-1, 1), size=tries)
            half = np.full((tries, 2), reach)
            half[np.arange(tries), axis] += travel / 2
            lo, hi = half, np.array([w, h]) - half
            centre = lo + rng.random((tries, 2)) * np.maximum(hi - lo, 0)
            cand = np.concatenate([centre - half, centre + half], axis=1)  # [tries, 4] x0, y0, x1, y1
            hit = ((cand[:, None, 0] < boxes[None, :, 2]) & (boxes[None, :, 0] < cand[:, None, 2])
                   & (cand[:, None, 1] < boxes[None, :, 3]) & (boxes[None, :, 1] < cand[:, None, 3])).any(axis=1)
            ok = np.nonzero(~hit & np.all(hi > lo, axis=1))[0]
            if not len(ok):
                break
            k = int(ok[0])
            boxes = np.concatenate([boxes, cand[k:k + 1]])
            placed.append(((float(centre[k, 0]), float(centre[k, 1])), int(axis[k]), int(sign[k])))
        if len(placed) == count:
            # Shuffle the slots: the first placed object has the most room, so placement order must not be role order.
            return [placed[i] for i in rng.permutation(count)]
    raise ConfigError(f"no room for {count} disjoint paths in a {w}x{h} frame: use a larger --size or fewer frames")


def twin_scenes(rng: np.random.Generator, kind: str, size: Tuple[int, int], frames: int,
                condition: str = "still") -> Tuple[Scene, Scene]:
    """Two scenes with the same objects, layout and camera that differ only in what ``kind`` varies."""
    if kind not in BENCH_KINDS:
        raise ConfigError(f"--kind must be one of {', '.join(BENCH_KINDS)}, got {kind!r}")
    if condition not in SCENE_CONDITIONS:
        raise ConfigError(f"--condition must be one of {', '.join(SCENE_CONDITIONS)}, got {condition!r}")
    radius, travel = scene_geometry(size, frames)
    slots = layout_objects(rng, size, radius, travel)
    names = [str(n) for n in rng.permutation(list(PALETTE))]
    colours, spare = names[:OBJECTS], names[OBJECTS]
    shapes = [SHAPES[int(rng.integers(len(SHAPES)))] for _ in range(OBJECTS)]
    mover = int(rng.integers(OBJECTS))  # null: drawn independently of the caption, shared by both twins
    cameras = camera_path(rng, condition, size, frames) if condition != "still" else ()
    seed = int(rng.integers(2**31))

    def scene(movers: Sequence[int], captioned: int, recolour: Dict[int, str]) -> Scene:
        objs = tuple(SceneObject(recolour.get(i, colours[i]), shapes[i], slots[i][0], slots[i][1], slots[i][2],
                                 i in movers, i == captioned) for i in range(OBJECTS))
        return Scene(objs, radius, travel, size, frames, condition, cameras, seed)

    if kind == "motion":  # the captioned object moves; in the twin the other one moves and is captioned
        return scene([0], 0, {}), scene([1], 1, {})
    if kind == "null":  # the captioned object's colour differs; the mover is any object, the same in both
        return scene([mover], 0, {}), scene([mover], 0, {0: spare})
    return scene([1], 0, {}), scene([1], 0, {0: spare})  # appearance: object 0 is still, object 1 moves in both


def scene_captions(scene: Scene, kind: str, rng: np.random.Generator, n: int) -> List[str]:
    """``n`` paraphrases naming the captioned object (colour and shape; ``moves``/``stays still`` per kind).

    The first caption is the plain one (``the red circle moves``); the rest are drawn by ``rng`` from a pool and
    repeat when ``n`` exceeds it.
    """
    obj = next(o for o in scene.objects if o.captioned)
    c, s = obj.colour, obj.shape
    syn = SYNONYMS[s]
    if kind == "motion":
        pool = [f"the {c} {s} moves", f"a {c} {syn[1]} is moving", f"the moving shape is a {c} {s}",
                f"a {c} {syn[2]} slides across the screen", f"the {c} {s} travels while the others stay still",
                f"a {c} {syn[1]} in motion"]
    elif kind == "null":
        pool = [f"a {c} {s}", f"there is a {c} {s} on the screen", f"a {c} {syn[1]} among other shapes",
                f"the {c} {s}", f"a {c} {syn[2]} on a plain background", f"a picture with a {c} {s}"]
    else:
        pool = [f"the {c} {s} stays still", f"a motionless {c} {syn[1]}", f"the {c} {s} does not move",
                f"a still {c} {syn[2]} among other shapes", f"a {c} {syn[1]} sits in one place",
                f"the {c} {s} is at rest"]
    out = [pool[0]] + [pool[i] for i in rng.permutation(np.arange(1, len(pool)))]
    return [out[i % len(out)] for i in range(n)]


def make_bench_set(root: str, kind: str, *, n_train: int = 192, n_test: int = 64, seed: int = 0,
                   captions_per_video: int = 5, size: Tuple[int, int] = DEFAULT_SIZE, fps: int = DEFAULT_FPS,
                   seconds: float = 3.0, condition: str = "still") -> Dict[str, Any]:
    """Write a benchmark set of ``kind`` in the MSR-VTT layout, with ground truth in ``fda_synthetic.json``.

    Twins are ``video{2k}`` and ``video{2k+1}``, both in the same split.

    Args:
        root: output folder (created; must be empty or an earlier synthetic set).
        kind: ``motion``, ``null`` or ``appearance``.
        n_train: training clips (even).
        n_test: test clips (even), one JSFUSION caption each.
        seed: data-set seed.
        captions_per_video: paraphrases per clip.
        size: ``(width, height)``, both even.
        fps: frame rate.
        seconds: clip length.
        condition: what the camera and the sensor do (:data:`SCENE_CONDITIONS`); ``still`` by default.

    Returns:
        Summary, as :func:`fda.lab.scenes.demo.make_msrvtt_demo`.

    Raises:
        ConfigError: odd counts, a size that cannot hold the paths, a palette that fails :func:`check_palette`.
    """
    check_counts(n_train, n_test, captions_per_video)
    for name, value in (("--train", n_train), ("--test", n_test)):
        if value % 2:
            raise ConfigError(f"{name} must be even for the {kind} set (clips come in twins), got {value}")
    check_palette(PALETTE, BACKGROUND)
    check_palette(PALETTE, (TEXTURE_RANGE[1],) * 3, min_contrast=TEXTURE_CONTRAST)  # the texture's brightest level
    w, h = check_size(size)
    frames = frame_count(fps, seconds)
    rng = np.random.default_rng([seed, BENCH_KINDS.index(kind) if kind in BENCH_KINDS else 99, 17])
    scenes: List[Scene] = []
    for _ in range((n_train + n_test) // 2):
        scenes.extend(twin_scenes(rng, kind, (w, h), frames, condition))
    captions = [scene_captions(sc, kind, rng, captions_per_video) for sc in scenes]
    test_pick = [int(rng.integers(captions_per_video)) for _ in range(n_test)]
    clips = [{"twin": f"video{i ^ 1}", **sc.truth()} for i, sc in enumerate(scenes)]

    crf = HEAVY_CRF if condition == "compression" else None

    def render(path: str, i: int) -> int:
        return encode_frames(path, render_scene(scenes[i]), size=(w, h), fps=fps, crf=crf)

    return write_msrvtt_set(root, len(scenes), captions, n_train, render=render, clips=clips, kind=kind, seed=seed,
                            size=(w, h), fps=fps, seconds=seconds, test_pick=test_pick,
                            extra={"condition": condition})
