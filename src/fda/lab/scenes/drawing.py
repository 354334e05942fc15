"""Drawing scenes: the one palette, the shapes, and :func:`render_scene`, the renderer of every scene generator.

A scene description (:class:`Renderable`) says what a clip shows: its size and frame count, its backdrop, its
objects (a shape of :data:`SHAPES` in a :data:`PALETTE` colour each) and where each one is in every frame, the
camera, and what the sensor does (``condition``). :func:`render_scene` turns one into frames; the demo clips
(:class:`fda.lab.scenes.demo.DemoScene`), the benchmark twins (:class:`fda.lab.scenes.bench.Scene`) and the long
clips (:class:`fda.lab.scenes.long.LongScene`) are such descriptions.
"""

from typing import Dict, Iterator, Mapping, Protocol, Sequence, Tuple

import cv2
import numpy as np

from fda.errors import ConfigError

PALETTE: Dict[str, Tuple[int, int, int]] = {  # RGB; every grey level is >= 50 above the benchmark background's 40
    "red": (235, 45, 45),
    "green": (40, 200, 60),
    "blue": (70, 120, 255),
    "yellow": (240, 220, 40),
    "purple": (185, 75, 235),
    "orange": (250, 140, 30),
    "cyan": (40, 210, 220),
    "white": (235, 235, 235),
}
DEMO_COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")  # the demo's colours, in the order it draws them
MIN_CONTRAST = 50.0
SHAPES = ("square", "circle", "triangle")
SYNONYMS = {  # the words a caption may use for each shape
    "square": ("square", "box", "block"), "circle": ("circle", "ball", "disc"),
    "triangle": ("triangle", "triangle", "wedge")}
FLICKER = 30  # grey levels added to every other frame (condition ``flicker``)
NOISE = 10.0  # sensor noise sigma, grey levels (condition ``noise``)


def grey_level(rgb: Sequence[int]) -> float:
    """Grey level of an RGB colour with the weights the masks use (OpenCV's ``RGB2GRAY``: 0.299, 0.587, 0.114)."""
    r, g, b = (float(v) for v in rgb)
    return 0.299 * r + 0.587 * g + 0.114 * b


def check_palette(palette: Mapping[str, Sequence[int]], background: Sequence[int],
                  min_contrast: float = MIN_CONTRAST) -> None:
    """Refuse a palette with a colour closer than ``min_contrast`` grey levels to the background.

    Raises:
        ConfigError: naming the first such colour, its distance and the fix.
    """
    bg = grey_level(background)
    for name, rgb in palette.items():
        gap = abs(grey_level(rgb) - bg)
        if gap < min_contrast:
            raise ConfigError(f"colour {name} {tuple(rgb)} is {gap:.1f} grey levels from the background "
                              f"{tuple(background)}; the benchmark needs >= {min_contrast:g} so that a tau-25 frame "
                              f"difference sees every mover: pick a colour further from the background")


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


class Drawn(Protocol):
    """One object of a scene description: a shape of :data:`SHAPES` in a :data:`PALETTE` colour."""

    @property
    def shape(self) -> str: ...

    @property
    def colour(self) -> str: ...


class Renderable(Protocol):
    """A scene description: what :func:`render_scene` needs to draw a clip.

    Attributes:
        size: ``(width, height)`` of the frames.
        frames: number of frames.
        radius: size of every object (the ``r`` of :func:`draw_shape`).
        objects: the objects, in drawing order (the last on top).
        condition: what the camera and the sensor do (``still``; ``flicker`` and ``noise`` are applied here).
        cameras: per frame, a 2x3 scene -> frame matrix (row-major); ``()`` for a static camera.
        seed: seed of the sensor noise.
    """

    @property
    def size(self) -> Tuple[int, int]: ...

    @property
    def frames(self) -> int: ...

    @property
    def radius(self) -> float: ...

    @property
    def objects(self) -> Sequence[Drawn]: ...

    @property
    def condition(self) -> str: ...

    @property
    def cameras(self) -> Tuple[Tuple[float, ...], ...]: ...

    @property
    def seed(self) -> int: ...

    def position(self, obj: Drawn, t: int) -> np.ndarray:
        """``(x, y)`` centre of ``obj`` in frame ``t``, in scene coordinates."""

    def camera(self, t: int) -> np.ndarray:
        """The 2x3 matrix mapping scene coordinates to frame ``t``'s pixels (used when ``cameras`` is not empty)."""

    def backdrop(self, width: int, height: int) -> np.ndarray:
        """The background: uint8 [height, width, 3] RGB (the frame plus a margin when the camera moves)."""


def render_scene(scene: Renderable) -> Iterator[np.ndarray]:
    """The frames of a scene description before encoding: uint8 [H, W, 3] RGB.

    Each frame is the backdrop with every object drawn at its position (the same arguments give the same pixels,
    so static objects are bit-identical across frames). With a moving camera the scene is drawn on a canvas with a
    margin and warped into each frame; ``flicker`` then brightens every other frame by :data:`FLICKER` grey levels
    and ``noise`` adds Gaussian noise of sigma :data:`NOISE` (seeded by ``scene.seed``).
    """
    w, h = scene.size
    margin = int(np.ceil(0.3 * min(w, h))) if scene.cameras else 0
    background = scene.backdrop(w + 2 * margin, h + 2 * margin)
    noise_rng = np.random.default_rng([scene.seed, 7])
    shift = np.array([[1.0, 0.0, margin], [0.0, 1.0, margin], [0.0, 0.0, 1.0]])
    for t in range(scene.frames):
        img = background.copy()
        for obj in scene.objects:
            draw_shape(img, obj.shape, PALETTE[obj.colour], scene.position(obj, t) + margin, scene.radius)
        if scene.cameras:  # canvas -> frame = camera(t) after removing the margin
            matrix = scene.camera(t) @ np.linalg.inv(shift)
            img = cv2.warpAffine(img, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if scene.condition == "flicker" and t % 2:
            img = np.clip(img.astype(np.int16) + FLICKER, 0, 255).astype(np.uint8)
        elif scene.condition == "noise":
            img = np.clip(img + noise_rng.normal(0, NOISE, img.shape[:2])[..., None], 0, 255).round().astype(np.uint8)
        yield img
