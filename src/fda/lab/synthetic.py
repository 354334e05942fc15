"""Synthetic videos and data sets made by the tool itself: real encoded videos with known content.

Every clip is a textured, static background with one *captioned* object (a coloured square, circle or triangle
that moves left, right, up or down, or stays still) and a few distractor objects of other colours and shapes.
Frames are drawn with numpy/OpenCV and piped to the ffmpeg binary as raw RGB (libx264, yuv420p, ``.mp4`` by
default), so decoding them exercises the same code paths as real data. Everything is deterministic for a seed:
each video draws from ``np.random.default_rng([seed, index])``.

The data sets are written in the MSR-VTT layout (``videos/all/video{i}.mp4``, ``MSRVTT_data.json`` in the CLIP4Clip
``sentences`` schema, ``MSRVTT_train.9k.csv``, ``MSRVTT_train.7k.csv``, ``MSRVTT_JSFUSION_test.csv``) plus
``fda_synthetic.json`` with every clip's spec, so ``fda preprocess`` reads them like the real thing:

- ``demo`` (:func:`make_msrvtt_demo`): the captioned object moves or stays still; every video has its own
  colour+shape+motion (as long as the combinations last), and the captions are paraphrases naming all three.
The benchmark scenes (``motion``, ``null``, ``appearance``) live in :mod:`fda.lab.scenes`, which uses the encoder
and the MSR-VTT writer of this module.
"""

import csv
import io
import json
import logging
import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from fda.files import make_out_dir
from fda.errors import ConfigError, EnvError, InputError
from fda.pipeline.video import find_ffmpeg

logger = logging.getLogger(__name__)

COLOURS: Dict[str, Tuple[int, int, int]] = {  # RGB, saturated so they stand out from the greyish background
    "red": (220, 30, 30),
    "green": (30, 190, 50),
    "blue": (40, 70, 230),
    "yellow": (240, 220, 30),
    "purple": (150, 50, 200),
    "orange": (250, 140, 20),
}
SHAPES = ("square", "circle", "triangle")
MOTIONS = ("left", "right", "up", "down", "static")
KINDS = ("demo", "motion", "static")
META_FILE = "fda_synthetic.json"
# Encoder arguments per container; -threads 1 and bitexact flags keep the bytes identical for a seed.
_CODECS: Dict[str, List[str]] = {
    ".mp4": ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-threads", "1"],
    ".mkv": ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-threads", "1"],
    ".webm": ["-c:v", "libvpx-vp9", "-crf", "30", "-b:v", "0", "-deadline", "realtime", "-cpu-used", "8",
              "-pix_fmt", "yuv420p", "-threads", "1"],
    ".avi": ["-c:v", "libxvid", "-q:v", "3", "-pix_fmt", "yuv420p", "-threads", "1"],
}
SYNONYMS = {  # the words a caption may use for each shape
    "square": ("square", "box", "block"), "circle": ("circle", "ball", "disc"),
    "triangle": ("triangle", "triangle", "wedge")}
_MOVE_WORDS = {  # (adverb phrase, verb, from, to)
    "right": ("to the right", "right", "left", "right"),
    "left": ("to the left", "left", "right", "left"),
    "up": ("upwards", "up", "bottom", "top"),
    "down": ("downwards", "down", "top", "bottom"),
}


@dataclass(frozen=True)
class ObjectSpec:
    """One drawn object: colour (a :data:`COLOURS` key), shape (:data:`SHAPES`), motion (:data:`MOTIONS`)."""

    colour: str
    shape: str
    motion: str = "static"

    def __post_init__(self) -> None:
        for name, value, choices in (("colour", self.colour, tuple(COLOURS)), ("shape", self.shape, SHAPES),
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
# Drawing


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


def draw_shape(img: np.ndarray, shape: str, colour: Tuple[int, int, int], centre: np.ndarray, r: float) -> None:
    """Draw a filled, anti-aliased ``shape`` (:data:`SHAPES`) of ``colour`` (RGB) centred at ``(x, y)`` into ``img``.

    The shape's extent around the centre is :func:`shape_extent`.
    """
    shift = 4  # sub-pixel positions: coordinates in 1/16 pixel
    s = 1 << shift
    cx, cy = float(centre[0]), float(centre[1])
    if shape == "circle":
        cv2.circle(img, (int(round(cx * s)), int(round(cy * s))), int(round(r * s)), colour, -1, cv2.LINE_AA, shift)
        return
    if shape == "square":
        k = r * 0.9
        pts = [(cx - k, cy - k), (cx + k, cy - k), (cx + k, cy + k), (cx - k, cy + k)]
    else:  # triangle, pointing up, circumradius a bit above r so its area is comparable
        k = r * 1.15
        pts = [(cx, cy - k), (cx + k * 0.866, cy + k * 0.5), (cx - k * 0.866, cy + k * 0.5)]
    poly = np.round(np.array(pts) * s).astype(np.int32)[None]
    cv2.fillPoly(img, poly, colour, cv2.LINE_AA, shift)


def shape_extent(shape: str, r: float) -> Tuple[float, float, float, float]:
    """``(left, top, right, bottom)`` of a shape drawn by :func:`draw_shape`, relative to its centre, in pixels."""
    if shape == "circle":
        return (-r, -r, r, r)
    if shape == "square":
        return (-0.9 * r, -0.9 * r, 0.9 * r, 0.9 * r)
    k = r * 1.15
    return (-0.866 * k, -k, 0.866 * k, 0.5 * k)


def _pick_distractors(rng: np.random.Generator, spec: ClipSpec, n: int) -> Tuple[ObjectSpec, ...]:
    colours = [c for c in COLOURS if c != spec.colour]
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


def render_frames(spec: ClipSpec, *, size: Tuple[int, int] = (160, 120), frames: int = 30,
                  seed: int = 0) -> Iterator[np.ndarray]:
    """The clip's frames, before encoding.

    Args:
        spec: the clip.
        size: ``(width, height)`` in pixels.
        frames: number of frames; objects move linearly from their start (first frame) to their end (last).
        seed: as in :func:`layout_clip`.

    Yields:
        uint8 [H, W, 3] RGB frames. Static parts are bit-identical from frame to frame.
    """
    w, h = size
    background = _background(np.random.default_rng([seed, 0]), w, h)
    plan = layout_clip(spec, size=size, seed=seed)
    objects = [(ObjectSpec(o["colour"], o["shape"], o["motion"]), np.array(o["start"]), np.array(o["end"]))
               for o in plan["objects"]]
    for t in range(frames):
        img = background.copy()
        a = t / (frames - 1) if frames > 1 else 0.0
        for obj, start, end in objects:  # same arguments -> same pixels, so static objects never flicker
            draw_shape(img, obj.shape, COLOURS[obj.colour], (1 - a) * start + a * end, plan["radius"])
        yield img


def check_size(size: Tuple[int, int]) -> Tuple[int, int]:
    """``(width, height)`` as integers: even sides of at least 16 px (yuv420p).

    Raises:
        ConfigError: an odd or too small side.
    """
    w, h = int(size[0]), int(size[1])
    if w < 16 or h < 16 or w % 2 or h % 2:
        raise ConfigError(f"--size must be even WIDTHxHEIGHT of at least 16x16 (yuv420p), got {w}x{h}")
    return w, h


def frame_count(fps: float, seconds: float) -> int:
    """Frames in a clip of ``seconds`` at ``fps`` (at least 2, so that something can move)."""
    return max(2, int(round(fps * seconds)))


def render_clip(path: str, spec: ClipSpec, *, size: Tuple[int, int] = (160, 120), fps: int = 10,
                seconds: float = 3, seed: int = 0) -> int:
    """Draw a clip and encode it with the ffmpeg binary; the file appears only when complete.

    The encoder follows the extension: ``.mp4``/``.mkv`` libx264, ``.webm`` VP9, ``.avi`` Xvid, all yuv420p.

    Args:
        path: output file.
        spec: the clip.
        size: ``(width, height)``, both even.
        fps: frame rate.
        seconds: duration.
        seed: see :func:`layout_clip`.

    Returns:
        The number of frames written.

    Raises:
        ConfigError: odd size or an extension with no encoder here.
        EnvError: no ffmpeg, or ffmpeg failed (the message holds its last stderr line).
    """
    w, h = check_size(size)
    n = frame_count(fps, seconds)
    return encode_frames(path, render_frames(spec, size=(w, h), frames=n, seed=seed), size=(w, h), fps=fps)


def encode_frames(path: str, frames: Iterable[np.ndarray], *, size: Tuple[int, int], fps: int,
                  crf: Optional[int] = None) -> int:
    """Encode uint8 [H, W, 3] RGB frames with the ffmpeg binary; the file appears only when complete.

    The encoder follows the extension: ``.mp4``/``.mkv`` libx264, ``.webm`` VP9, ``.avi`` Xvid, all yuv420p, with
    bit-exact flags so the same frames always give the same bytes. ``crf`` overrides the H.264/VP9 quality (higher
    is worse: 40 is heavy compression).

    Returns:
        The number of frames written.

    Raises:
        ConfigError: odd size or an extension with no encoder here.
        EnvError: no ffmpeg, or ffmpeg failed (the message holds its last stderr line).
    """
    w, h = check_size(size)
    ext = os.path.splitext(path)[1].lower()
    if ext not in _CODECS:
        raise ConfigError(f"cannot encode {path}: use one of {', '.join(_CODECS)}")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.part{ext}")
    codec = list(_CODECS[ext])
    if crf is not None and "-crf" in codec:
        codec[codec.index("-crf") + 1] = str(int(crf))
    cmd = [find_ffmpeg(), "-y", "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", str(fps), "-i", "pipe:0", *codec, "-r", str(fps),
           "-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1", tmp]
    n = 0
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        try:
            for frame in frames:
                proc.stdin.write(np.ascontiguousarray(frame).tobytes())  # type: ignore[union-attr]
                n += 1
            proc.stdin.close()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass  # ffmpeg died; its return code and stderr say why
        finally:
            rc = proc.wait()
        if rc != 0:
            err.seek(0)
            lines = [ln for ln in err.read().decode("utf-8", "replace").splitlines() if ln.strip()]
            if os.path.exists(tmp):
                os.remove(tmp)
            raise EnvError(f"ffmpeg failed to encode {path} (exit {rc}): {lines[-1] if lines else 'no message'}")
    os.replace(tmp, path)
    return n


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


# --------------------------------------------------------------------------------------------------------------
# Data sets in the MSR-VTT layout


def _prepare_root(root: str) -> None:
    """Create ``root``; refuse a non-empty folder that is not an earlier synthetic set (whose videos are removed)."""
    if os.path.exists(root) and not os.path.isdir(root):
        raise InputError(f"{root} exists and is not a folder: choose another output folder")
    make_out_dir(root, "OUT_DIR")
    meta = os.path.join(root, META_FILE)
    if os.path.isfile(meta):
        try:
            with open(meta, "r", encoding="utf-8") as fh:
                old = json.load(fh)
            for rel in old.get("files", []):
                old_path = os.path.join(root, rel)
                if os.path.isfile(old_path):
                    os.remove(old_path)
        except (OSError, ValueError) as err:
            raise InputError(f"{meta} is unreadable ({err}): delete {root} and generate again") from None
    elif os.listdir(root):
        raise InputError(f"{root} is not empty and holds no {META_FILE}: choose a new output folder")


def write_msrvtt_set(root: str, n_videos: int, captions: Sequence[List[str]], n_train: int, *,
                     render: Callable[[str, int], int], clips: Sequence[Dict[str, Any]], kind: str, seed: int,
                     size: Tuple[int, int], fps: int, seconds: float, test_pick: Sequence[int],
                     extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Render every clip and write the MSR-VTT annotation files plus :data:`META_FILE`; returns the summary dict.

    Args:
        root: output folder (created; must be empty or an earlier synthetic set).
        n_videos: clips (``video0`` ...); the first ``n_train`` are the training split, the rest the test split.
        captions: every clip's captions.
        n_train: training clips.
        render: ``render(path, i)`` encodes clip ``i`` to ``path`` and returns its frame count.
        clips: per clip, what it shows (ground truth); written to :data:`META_FILE` with its id and split.
        kind: the set's kind (recorded).
        seed: data-set seed (recorded).
        size: ``(width, height)``.
        fps: frame rate (recorded).
        seconds: clip length (recorded).
        test_pick: per test clip, which caption goes to the JSFUSION list.
        extra: more fields for the summary (recorded in :data:`META_FILE` and returned).
    """
    w, h = check_size(size)
    _prepare_root(root)
    ids = [f"video{i}" for i in range(n_videos)]
    rels = [f"videos/all/{v}.mp4" for v in ids]

    def one(i: int) -> int:
        return render(os.path.join(root, *rels[i].split("/")), i)

    # ffmpeg runs in its own process, so threads give real parallelism here.
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        counts = list(pool.map(one, range(n_videos)))

    train_ids, test_ids = ids[:n_train], ids[n_train:]
    videos = [{"category": 0, "url": f"synthetic://{kind}/{seed}/{v}", "video_id": v, "start time": 0.0,
               "end time": float(seconds), "split": "train" if i < n_train else "test", "id": i}
              for i, v in enumerate(ids)]
    sentences = [{"caption": cap, "video_id": v, "sen_id": 0} for v, caps in zip(ids, captions) for cap in caps]
    for sen_id, sentence in enumerate(sentences):
        sentence["sen_id"] = sen_id
    info = {"contributor": "fda generate", "description": f"synthetic {kind} set", "seed": seed}
    _write_text(root, "MSRVTT_data.json", json.dumps({"info": info, "videos": videos, "sentences": sentences}))
    _write_csv(root, "MSRVTT_train.9k.csv", ["video_id"], [[v] for v in train_ids])
    n7 = max(1, (len(train_ids) * 7010 + 8999) // 9000)  # the 7k list is a prefix of the 9k one, as in MSR-VTT
    _write_csv(root, "MSRVTT_train.7k.csv", ["video_id"], [[v] for v in train_ids[:n7]])
    _write_csv(root, "MSRVTT_JSFUSION_test.csv", ["key", "vid_key", "video_id", "sentence"],
               [[f"ret{j}", f"msr{v[5:]}", v, captions[n_train + j][test_pick[j]]] for j, v in enumerate(test_ids)])
    records = [{"video_id": v, "split": "train" if i < n_train else "test", "captions": list(captions[i]),
                "frames": counts[i], **clips[i]} for i, v in enumerate(ids)]
    summary = {"root": os.path.abspath(root), "kind": kind, "seed": seed, "size": [w, h], "fps": fps,
               "seconds": seconds, "train": len(train_ids), "test": len(test_ids), "videos": len(ids),
               "frames_per_video": counts[0] if counts else 0, "captions": len(sentences), "files": rels,
               **(extra or {})}
    _write_text(root, META_FILE, json.dumps({**summary, "clips": records}, indent=1))
    logger.info("wrote %d synthetic %s videos (%d train, %d test) to %s", len(ids), kind, len(train_ids),
                len(test_ids), root)
    return summary


def _write_csv(root: str, name: str, header: List[str], rows: List[List[str]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    _write_text(root, name, buf.getvalue())


def _write_text(root: str, name: str, text: str) -> None:
    path = os.path.join(root, name)
    tmp = path + ".part"
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    os.replace(tmp, path)


def check_counts(n_train: int, n_test: int, captions_per_video: int = 1) -> None:
    """Video counts of a generated set (>= 1 each) and its captions per video.

    Raises:
        ConfigError: a count out of range.
    """
    if not (isinstance(n_train, int) and n_train >= 1):
        raise ConfigError(f"--train must be an integer >= 1, got {n_train!r}")
    if not (isinstance(n_test, int) and n_test >= 1):
        raise ConfigError(f"--test must be an integer >= 1, got {n_test!r}")
    if not (isinstance(captions_per_video, int) and captions_per_video >= 1):
        raise ConfigError(f"captions_per_video must be an integer >= 1, got {captions_per_video!r}")


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
    combos = [(c, s, m) for c in COLOURS for s in SHAPES for m in MOTIONS]
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


def summarize(summary: Dict[str, Any]) -> str:
    """One line for the console."""
    w, h = summary["size"]
    return (f"wrote {summary['videos']} {summary['kind']} videos ({summary['train']} train, {summary['test']} test, "
            f"{summary['frames_per_video']} frames at {w}x{h}, {summary['captions']} captions) to {summary['root']}")
