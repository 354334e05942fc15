"""Stage configurations: frozen dataclasses, validated once, mapped 1:1 onto CLI options.

Field ``frames_train`` is the option ``--frames-train``; the CLI reads each option's default from the field, so
the two can never disagree (``tests/test_cli.py`` compares the name sets). Validation raises
:class:`fda.errors.ConfigError` with a one-line message naming the option, the value and the fix.
"""

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

from fda.errors import ConfigError, path_error

LAYOUTS = ("msrvtt", "msvd", "activitynet", "didemo", "lsmdc", "folder")
SPLITS = ("train", "val", "test")
DECODERS = ("pyav",)
ENGINES = ("local", "ray")
EMPTY_MASKS = ("full", "zero")
DIFF_MODES = ("adjacent", "sampled")
CAMERA_MOTIONS = ("none", "compensate")
MAX_FRAMES = 99  # member names carry two digits: f00 ... f98


def flag(name: str) -> str:
    """The CLI option for a config field: ``frames_train`` -> ``--frames-train``, ``n`` -> ``-n``."""
    return ("-" if len(name) == 1 else "--") + name.replace("_", "-")


def _require(ok: bool, field: str, value: Any, need: str) -> None:
    if not ok:
        raise ConfigError(f"{flag(field)} must be {need}, got {value!r}")


def _choice(field: str, value: Any, choices: Sequence[str]) -> None:
    _require(value in choices, field, value, "one of " + ", ".join(choices))


def make_out_dir(path: str, option: str = "--out") -> str:
    """Create the output folder ``path`` (and its parents) if needed; return it.

    Raises:
        ConfigError: ``path`` (or a part of it) is a file, or cannot be a folder there (exit 2).
        EnvError: the machine refuses: no permission, a read-only or full file system (exit 4).
    """
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ConfigError(f"{option} {path!r} is a file, not a folder: choose another {option} (or move the file)")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise path_error(option, path, err, f"choose another {option} in a folder you can write to") from None
    return path


def field_default(cls: type, name: str) -> Any:
    """The default value of a dataclass field (for Click's ``default=``)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                return f.default_factory()  # type: ignore[misc]
            raise KeyError(f"{cls.__name__}.{name} has no default")
    raise KeyError(f"{cls.__name__} has no field {name}")


def parse_splits(value: Optional[str]) -> Optional[Tuple[str, ...]]:
    """Turn ``"train,test"`` into ``("train", "test")``; ``None`` or ``"all"`` means every split."""
    if value is None or value.strip() in ("", "all"):
        return None
    parts = tuple(dict.fromkeys(p.strip() for p in value.split(",") if p.strip()))
    for part in parts:
        if part not in SPLITS:
            raise ConfigError(f"--split must be a comma list of {', '.join(SPLITS)}, got {value!r}")
    return parts


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything ``fda preprocess`` needs; the fields that shape the data are recorded in every shard set."""

    dataset_root: str
    out: str = "shards"
    layout: Optional[str] = None
    msrvtt_train: str = "9k"
    captions: Optional[str] = None
    split: Optional[str] = None
    frames_train: int = 6
    frames_test: int = 12
    size: int = 224
    tau: float = 25.0
    kernel: int = 3
    min_area: int = 16
    empty_mask: str = "full"
    diff_mode: str = "adjacent"
    camera_motion: str = "none"
    normalize_brightness: bool = False
    jpeg_quality: int = 90
    samples_per_shard: int = 200
    decoder: str = "pyav"
    min_decodable: float = 0.95
    workers: int = 0
    engine: str = "local"
    ray_address: Optional[str] = None
    max_failure_rate: float = 0.01
    limit: Optional[int] = None
    overwrite: bool = False
    retry_failed: bool = False
    full_duration: bool = False  # didemo only: sample the whole clip, not only its annotated first 30 s

    def __post_init__(self) -> None:
        if self.layout is not None:
            _choice("layout", self.layout, LAYOUTS)
        _choice("msrvtt_train", self.msrvtt_train, ("9k", "7k"))
        parse_splits(self.split)
        for name in ("frames_train", "frames_test"):
            value = getattr(self, name)
            _require(isinstance(value, int) and 1 <= value <= MAX_FRAMES, name, value, f"an integer in 1..{MAX_FRAMES}")
        _require(isinstance(self.size, int) and 16 <= self.size <= 4096, "size", self.size, "an integer in 16..4096")
        _require(isinstance(self.tau, (int, float)) and 0 <= self.tau <= 255, "tau", self.tau,
                 "in 0..255 (grey levels)")
        object.__setattr__(self, "tau", float(self.tau))
        _require(isinstance(self.kernel, int) and self.kernel >= 0 and (self.kernel == 0 or self.kernel % 2 == 1),
                 "kernel", self.kernel, "0 (no morphology) or an odd integer >= 1")
        _require(isinstance(self.min_area, int) and self.min_area >= 0, "min_area", self.min_area, ">= 0 pixels")
        _choice("empty_mask", self.empty_mask, EMPTY_MASKS)
        _choice("diff_mode", self.diff_mode, DIFF_MODES)
        _choice("camera_motion", self.camera_motion, CAMERA_MOTIONS)
        _require(1 <= self.jpeg_quality <= 100, "jpeg_quality", self.jpeg_quality, "in 1..100")
        _require(self.samples_per_shard >= 1, "samples_per_shard", self.samples_per_shard, ">= 1")
        _choice("decoder", self.decoder, DECODERS)
        _require(isinstance(self.min_decodable, (int, float)) and 0.0 <= self.min_decodable <= 1.0, "min_decodable",
                 self.min_decodable, "in 0..1 (the fraction of a clip's frames that must decode)")
        _require(self.workers >= 0, "workers", self.workers, ">= 0 (0: all cores)")
        _choice("engine", self.engine, ENGINES)
        _require(0.0 <= self.max_failure_rate <= 1.0, "max_failure_rate", self.max_failure_rate, "in 0..1")
        _require(self.limit is None or self.limit >= 1, "limit", self.limit, ">= 1")
        if self.ray_address is not None and self.engine != "ray":
            raise ConfigError(f"--ray-address needs --engine ray, got --engine {self.engine}")
        if self.full_duration and self.layout not in (None, "didemo"):
            raise ConfigError(f"--full-duration applies to --layout didemo only (the layout whose clips were "
                              f"annotated on their first 30 s), got --layout {self.layout}: drop --full-duration")

    @property
    def splits(self) -> Optional[Tuple[str, ...]]:
        """Selected splits, or ``None`` for every split the dataset has."""
        return parse_splits(self.split)

    @property
    def num_workers(self) -> int:
        """Worker processes: ``workers`` or, when 0, every core."""
        return self.workers or (os.cpu_count() or 1)

    def frames_for(self, split: str) -> int:
        """Frames sampled per clip of ``split``: the training count for train, the test count otherwise."""
        return self.frames_train if split == "train" else self.frames_test

    def data_fields(self) -> Dict[str, Any]:
        """The fields that decide the bytes of the shards; a rerun must match them to resume."""
        keep = ("layout", "msrvtt_train", "captions", "split", "frames_train", "frames_test", "size", "tau",
                "kernel", "min_area", "empty_mask", "diff_mode", "camera_motion", "normalize_brightness",
                "jpeg_quality", "samples_per_shard", "limit", "decoder", "min_decodable")
        fields = {k: getattr(self, k) for k in keep}
        if self.full_duration:  # recorded only when on, so every other shard set keeps its recorded fingerprint
            fields["full_duration"] = True
        return fields


GENERATE_KINDS = ("demo", "motion", "null", "appearance")
BENCH_KINDS = GENERATE_KINDS[1:]  # the benchmark scenes of fda.lab.scenes
SCENE_CONDITIONS = ("still", "pan", "zoom", "shake", "flicker", "noise", "compression")


def parse_size(value: str) -> Tuple[int, int]:
    """Turn ``"160x120"`` into ``(160, 120)``: even sides of at least 16 px (yuv420p), at most 4096."""
    parts = str(value).lower().split("x")
    if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
        w, h = (int(p) for p in parts)
        if 16 <= w <= 4096 and 16 <= h <= 4096 and w % 2 == 0 and h % 2 == 0:
            return w, h
    raise ConfigError(f"--size must be WIDTHxHEIGHT with even sides in 16..4096 (e.g. 160x120), got {value!r}")


@dataclass(frozen=True)
class GenerateConfig:
    """``fda generate``: a synthetic data set in the MSR-VTT layout (``demo`` or a benchmark scene kind).

    ``size`` and ``fps`` left out take the kind's defaults: 160x120 at 10 fps for ``demo``, 64x64 at 2 fps for the
    benchmark kinds (their objects move 5 px per frame, so a 3 s clip must have few frames).
    """

    out_dir: str
    kind: str = "demo"
    train: int = 24
    test: int = 12
    seed: int = 0
    size: Optional[str] = None
    fps: Optional[int] = None
    seconds: float = 3.0
    condition: str = "still"

    def __post_init__(self) -> None:
        _choice("kind", self.kind, GENERATE_KINDS)
        _choice("condition", self.condition, SCENE_CONDITIONS)
        _require(self.kind != "demo" or self.condition == "still", "condition", self.condition,
                 "still for --kind demo (conditions apply to the benchmark scenes)")
        for name in ("train", "test"):
            value = getattr(self, name)
            _require(isinstance(value, int) and 1 <= value <= 100_000, name, value, "an integer in 1..100000")
        _require(isinstance(self.seed, int) and self.seed >= 0, "seed", self.seed, "an integer >= 0")
        parse_size(self.size or "64x64")
        fps = self.frame_rate
        _require(isinstance(fps, int) and 1 <= fps <= 120, "fps", fps, "an integer in 1..120")
        _require(isinstance(self.seconds, (int, float)) and 0 < self.seconds <= 600, "seconds", self.seconds,
                 "in (0, 600]")
        _require(round(fps * self.seconds) >= 2, "seconds", self.seconds, f"long enough for 2 frames at --fps {fps}")

    @property
    def dimensions(self) -> Tuple[int, int]:
        """``(width, height)`` in pixels."""
        return parse_size(self.size or ("160x120" if self.kind == "demo" else "64x64"))

    @property
    def frame_rate(self) -> int:
        """Frames per second."""
        if self.fps is not None:
            return self.fps
        return 10 if self.kind == "demo" else 2


CAPTION_MODES = ("all", "random")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda", "mps")
AUGMENTS = ("none", "crop-flip")
VAL_SPLITS = ("auto", "val", "test", "none")


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``fda train`` needs (paper defaults: CLIP4Clip meanP recipe, Alpha-CLIP's alpha-conv lr).

    ``batch_size`` is per process and per micro-step; a step sees ``batch_size x accum_steps`` pairs per process.
    The length is ``max_steps`` when given, else ``epochs`` x the steps of one epoch (from the manifest's counts).
    """

    shards_dir: str
    out: Optional[str] = None
    split: str = "train"
    val_split: str = "auto"
    model: str = "ViT-B-32"
    pretrained: Optional[str] = "openai"
    alpha_checkpoint: Optional[str] = None
    no_alpha: bool = False
    captions: str = "all"
    batch_size: int = 128
    accum_steps: int = 1
    workers: int = 4  # DataLoader workers per process: the CLI's --loader-workers (--workers: deprecated spelling)
    shuffle_buffer: int = 500
    epochs: int = 5
    max_steps: Optional[int] = None
    lr: float = 1e-6
    alpha_lr: float = 1e-4
    weight_decay: float = 0.2
    warmup_steps: Optional[int] = None
    grad_clip: float = 1.0
    label_smoothing: float = 0.0
    freeze_text: bool = False
    augment: str = "none"
    precision: str = "auto"
    grad_checkpointing: bool = False
    device: str = "auto"
    seed: int = 0
    save_every: int = 1000
    keep_last: int = 3
    log_every: int = 10
    val_every: int = 0
    tensorboard: bool = True
    resume: Optional[str] = None

    def __post_init__(self) -> None:
        _choice("split", self.split, SPLITS)
        _choice("val_split", self.val_split, VAL_SPLITS)
        _choice("captions", self.captions, CAPTION_MODES)
        _choice("augment", self.augment, AUGMENTS)
        _choice("precision", self.precision, PRECISIONS)
        _require(isinstance(self.device, str) and self.device.split(":")[0] in DEVICES, "device", self.device,
                 "auto, cpu, cuda, cuda:N or mps")
        for name in ("batch_size", "accum_steps", "epochs", "log_every", "keep_last", "save_every"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value >= 1, name, value, "an integer >= 1")
        _require(isinstance(self.workers, int) and self.workers >= 0, "loader_workers", self.workers,
                 ">= 0 (0: load in the main process)")
        _require(self.shuffle_buffer >= 1, "shuffle_buffer", self.shuffle_buffer, ">= 1 video (1: no shuffle)")
        _require(self.max_steps is None or self.max_steps >= 1, "max_steps", self.max_steps, ">= 1")
        _require(self.warmup_steps is None or self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, ">= 0")
        for name in ("lr", "alpha_lr", "weight_decay", "grad_clip"):
            value = getattr(self, name)
            _require(value >= 0 and value == value and value != float("inf"), name, value, "a finite number >= 0")
        _require(0.0 <= self.label_smoothing < 1.0, "label_smoothing", self.label_smoothing, "in [0, 1)")
        _require(self.val_every >= 0, "val_every", self.val_every, ">= 0 (0: at each epoch end)")
        if self.no_alpha and self.alpha_checkpoint:
            raise ConfigError("--alpha-checkpoint has no use with --no-alpha: drop one of them")


SEARCH_TARGETS = ("videos", "captions")
INDEX_KINDS = ("none", "hnsw")


def _model_source_checks(cfg: Any) -> None:
    """One model source: a run/checkpoint, or a model that was never trained (``--model``/``--pretrained``)."""
    trained = bool(getattr(cfg, "run", None) or cfg.checkpoint)
    if trained and (cfg.model or cfg.pretrained):
        raise ConfigError("--model/--pretrained evaluate an untrained model; --run/--checkpoint a trained one: "
                          "pass only one kind")
    if cfg.alpha_checkpoint and not (cfg.model or cfg.pretrained):
        raise ConfigError("--alpha-checkpoint goes with --model/--pretrained (a checkpoint records its own weights)")


@dataclass(frozen=True)
class EvalConfig:
    """``fda eval``: retrieval metrics of a trained run, a checkpoint, or a never-trained model on one split."""

    split: str = "test"
    shards: Optional[str] = None  # None: the shard set the run trained on, else ./shards
    run: Optional[str] = None
    checkpoint: Optional[str] = None
    model: Optional[str] = None
    pretrained: Optional[str] = None
    alpha_checkpoint: Optional[str] = None
    runs_dir: str = "runs"
    frames: Optional[int] = None  # None: whatever the shards hold
    batch_size: int = 32
    text_batch_size: int = 256
    workers: int = 2
    device: str = "auto"
    dsl: bool = False
    baseline: bool = False
    out: Optional[str] = None
    cache: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        _choice("split", self.split, SPLITS)
        _model_source_checks(self)
        _require(self.frames is None or (isinstance(self.frames, int) and 1 <= self.frames <= MAX_FRAMES), "frames",
                 self.frames, f"an integer in 1..{MAX_FRAMES}")
        for name in ("batch_size", "text_batch_size"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value >= 1, name, value, "an integer >= 1")
        _require(isinstance(self.workers, int) and self.workers >= 0, "workers", self.workers,
                 ">= 0 decoding threads (0: decode in the main thread)")
        _require(isinstance(self.device, str) and self.device.split(":")[0] in ("auto", "cpu", "cuda", "mps"),
                 "device", self.device, "auto, cpu, cuda, cuda:N or mps")


@dataclass(frozen=True)
class EmbedConfig:
    """``fda embed``: video and caption embeddings of a shard set, written in chunks for ``fda search``."""

    out: str
    shards: Optional[str] = None  # None: the shard set the run trained on, else ./shards
    split: Optional[str] = None
    run: Optional[str] = None
    checkpoint: Optional[str] = None
    model: Optional[str] = None
    pretrained: Optional[str] = None
    alpha_checkpoint: Optional[str] = None
    runs_dir: str = "runs"
    batch_size: int = 32
    text_batch_size: int = 256
    chunk_size: int = 65536
    captions: bool = True
    index: str = "none"
    workers: int = 2
    device: str = "auto"
    seed: int = 0
    overwrite: bool = False

    def __post_init__(self) -> None:
        parse_splits(self.split)
        _model_source_checks(self)
        for name in ("batch_size", "text_batch_size", "chunk_size"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value >= 1, name, value, "an integer >= 1")
        _choice("index", self.index, INDEX_KINDS)
        _require(isinstance(self.workers, int) and self.workers >= 0, "workers", self.workers, ">= 0")
        _require(isinstance(self.device, str) and self.device.split(":")[0] in ("auto", "cpu", "cuda", "mps"),
                 "device", self.device, "auto, cpu, cuda, cuda:N or mps")

    @property
    def splits(self) -> Optional[Tuple[str, ...]]:
        """Selected splits, or ``None`` for every split of the shard set."""
        return parse_splits(self.split)


@dataclass(frozen=True)
class SearchConfig:
    """``fda search``: nearest videos (or captions) to a text query or to a video, from ``fda embed`` output."""

    emb_dir: str
    query: Optional[str] = None
    video: Optional[str] = None
    k: int = 10
    target: str = "videos"
    exact: bool = False
    device: str = "auto"
    json: bool = False

    def __post_init__(self) -> None:
        if (self.query is None) == (self.video is None):
            raise ConfigError("give a text QUERY or --video ID (exactly one)")
        if self.query is not None and not self.query.strip():
            raise ConfigError("QUERY is empty: give some words to search for, or --video ID")
        _require(isinstance(self.k, int) and self.k >= 1, "k", self.k, "an integer >= 1")
        _choice("target", self.target, SEARCH_TARGETS)
        _require(isinstance(self.device, str) and self.device.split(":")[0] in ("auto", "cpu", "cuda", "mps"),
                 "device", self.device, "auto, cpu, cuda, cuda:N or mps")


@dataclass(frozen=True)
class DemoConfig:
    """``fda demo``: a benchmark scene set -> preprocess -> train with masks and with --no-alpha -> twin accuracy.

    A controlled synthetic test of the mechanism on a small randomly initialised model, over a few seeds; the
    paper's MSR-VTT numbers need real data and CLIP weights.
    """

    out: str = "demo"
    kind: str = "motion"
    train_videos: int = 192
    test_videos: int = 64
    fps: int = 2
    size: int = 64
    frames: int = 4
    model: str = "fda-small"
    pretrained: Optional[str] = None
    steps: int = 200
    batch_size: int = 16
    lr: float = 1e-3
    alpha_lr: float = 1e-3
    loader_workers: int = 0
    device: str = "auto"
    seeds: str = "0,1"
    visualize: int = 8

    def __post_init__(self) -> None:
        _choice("kind", self.kind, BENCH_KINDS)
        for name in ("train_videos", "test_videos"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value >= 4 and value % 2 == 0, name, value,
                     "an even integer >= 4 (clips come in twins)")
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value >= 2, name, value, "an integer >= 2")
        _require(self.batch_size <= self.train_videos, "batch_size", self.batch_size,
                 f"<= --train-videos ({self.train_videos}): a batch never holds a video twice")
        _require(isinstance(self.size, int) and 16 <= self.size <= 1024, "size", self.size, "an integer in 16..1024")
        _require(isinstance(self.fps, int) and 1 <= self.fps <= 60, "fps", self.fps, "an integer in 1..60")
        _require(isinstance(self.frames, int) and 2 <= self.frames <= MAX_FRAMES, "frames", self.frames,
                 f"an integer in 2..{MAX_FRAMES}")
        for name in ("lr", "alpha_lr"):
            value = getattr(self, name)
            _require(0 < value < 1, name, value, "in (0, 1)")
        _require(self.loader_workers >= 0, "loader_workers", self.loader_workers, ">= 0 (0: the main process)")
        parse_seeds(self.seeds)
        _require(isinstance(self.visualize, int) and self.visualize >= 0, "visualize", self.visualize,
                 ">= 0 test videos to draw (0: no pictures)")

    def bench_config(self) -> "BenchMotionConfig":
        """The demo as a two-arm motion benchmark (masks vs no-alpha) on one scene kind."""
        return BenchMotionConfig(out=self.out, sets=self.kind, arms="masks,no-alpha", seeds=self.seeds,
                                 train_videos=self.train_videos, test_videos=self.test_videos, size=self.size,
                                 fps=self.fps, frames=self.frames, model=self.model, pretrained=self.pretrained,
                                 steps=self.steps, batch_size=self.batch_size, lr=self.lr, alpha_lr=self.alpha_lr,
                                 train_workers=self.loader_workers, device=self.device)


# --- visualize, masks-stats, sweep, ablate, bench-motion ----------------------------------------------------------
ANIMATIONS = ("gif", "mp4", "none")


def parse_floats(value: str, option: str) -> Tuple[float, ...]:
    """Turn ``"0,12.5,25"`` into ``(0.0, 12.5, 25.0)`` (order kept, repeats dropped)."""
    try:
        parts = tuple(dict.fromkeys(float(p) for p in str(value).split(",") if p.strip()))
    except ValueError:
        parts = ()
    if not parts:
        raise ConfigError(f"{option} must be a comma list of numbers (e.g. 0,12.5,25), got {value!r}")
    return parts


def parse_seeds(value: str) -> Tuple[int, ...]:
    """Turn ``"0,1,2"`` into ``(0, 1, 2)``: integers >= 0, repeats dropped."""
    parts = [p.strip() for p in str(value).split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise ConfigError(f"--seeds must be a comma list of integers >= 0 (e.g. 0,1,2), got {value!r}")
    return tuple(dict.fromkeys(int(p) for p in parts))


@dataclass(frozen=True)
class VisualizeConfig:
    """``fda visualize``: per video a PNG sheet of frames with the mask overlaid, an animation, an index.html."""

    shards_dir: str
    out: str = "viz"
    split: str = "test"
    n: int = 16
    video: Tuple[str, ...] = ()
    tile: int = 128
    animation: str = "gif"
    fps: float = 3.0

    def __post_init__(self) -> None:
        _choice("split", self.split, SPLITS)
        _require(isinstance(self.n, int) and self.n >= 1, "n", self.n, "an integer >= 1 (videos to draw)")
        object.__setattr__(self, "video", tuple(self.video or ()))
        _require(isinstance(self.tile, int) and 16 <= self.tile <= 1024, "tile", self.tile, "an integer in 16..1024")
        _choice("animation", self.animation, ANIMATIONS)
        _require(isinstance(self.fps, (int, float)) and 0 < self.fps <= 60, "fps", self.fps, "in (0, 60]")


@dataclass(frozen=True)
class MasksStatsConfig:
    """``fda masks-stats``: mask coverage and full-mask fallback share per split (and per tau) of shard sets."""

    shards_dirs: Tuple[str, ...]
    out: str = "mask_stats.png"
    split: Optional[str] = None
    bins: int = 20

    def __post_init__(self) -> None:
        object.__setattr__(self, "shards_dirs", tuple(self.shards_dirs or ()))
        if not self.shards_dirs:
            raise ConfigError("give at least one SHARDS_DIR (a folder written by fda preprocess)")
        parse_splits(self.split)
        _require(str(self.out).lower().endswith(".png"), "out", self.out, "a .png file name")
        _require(isinstance(self.bins, int) and 2 <= self.bins <= 200, "bins", self.bins, "an integer in 2..200")

    @property
    def splits(self) -> Optional[Tuple[str, ...]]:
        """Selected splits, or ``None`` for every split."""
        return parse_splits(self.split)


def _budget_checks(cfg: Any) -> None:
    """Shared checks of the training budget of ``fda sweep`` and ``fda ablate``."""
    parse_seeds(cfg.seeds)
    _require(cfg.steps is None or (isinstance(cfg.steps, int) and cfg.steps >= 1), "steps", cfg.steps,
             "an integer >= 1 (or leave it out to train --epochs)")
    for name in ("epochs", "batch_size", "eval_batch_size"):
        value = getattr(cfg, name)
        _require(isinstance(value, int) and value >= 1, name, value, "an integer >= 1")
    for name in ("lr", "alpha_lr", "weight_decay"):
        value = getattr(cfg, name)
        _require(value >= 0 and value == value and value != float("inf"), name, value, "a finite number >= 0")
    _require(isinstance(cfg.train_workers, int) and cfg.train_workers >= 0, "train_workers", cfg.train_workers,
             ">= 0 (0: load in the main process)")
    _require(isinstance(cfg.device, str) and cfg.device.split(":")[0] in DEVICES, "device", cfg.device,
             "auto, cpu, cuda, cuda:N or mps")


@dataclass(frozen=True)
class SweepConfig:
    """``fda sweep``: preprocess once per tau (one decode), train each with the same budget and seeds, evaluate.

    The no-mask baseline (``--no-alpha``, same budget) is trained once: the frames are the same for every tau.
    """

    dataset_root: str
    tau: str = "0,12.5,25,50,100"
    out: str = "sweep"
    layout: Optional[str] = None
    split: Optional[str] = None
    size: int = 224
    frames_train: int = 6
    frames_test: int = 12
    kernel: int = 3
    min_area: int = 16
    empty_mask: str = "full"
    diff_mode: str = "adjacent"
    camera_motion: str = "none"
    normalize_brightness: bool = False
    decoder: str = "pyav"
    workers: int = 0
    limit: Optional[int] = None
    model: str = "ViT-B-32"
    pretrained: Optional[str] = "openai"
    steps: Optional[int] = None
    epochs: int = 5
    batch_size: int = 128
    lr: float = 1e-6
    alpha_lr: float = 1e-4
    weight_decay: float = 0.2
    seeds: str = "0"
    baseline: bool = True
    train_workers: int = 4
    eval_batch_size: int = 32
    device: str = "auto"
    overwrite: bool = False

    def __post_init__(self) -> None:
        for tau in self.taus:
            _require(0 <= tau <= 255, "tau", self.tau, "a comma list of thresholds in 0..255 (grey levels)")
        self.preprocess_config(self.taus[0], self.out)  # the preprocess options, checked by their own rules
        _budget_checks(self)

    @property
    def taus(self) -> Tuple[float, ...]:
        """The thresholds, in the order given."""
        return parse_floats(self.tau, "--tau")

    @property
    def seed_list(self) -> Tuple[int, ...]:
        """Training seeds."""
        return parse_seeds(self.seeds)

    def preprocess_config(self, tau: float, out: str) -> PreprocessConfig:
        """The :class:`PreprocessConfig` of one tau's shard set."""
        return PreprocessConfig(dataset_root=self.dataset_root, out=out, layout=self.layout, split=self.split,
                                frames_train=self.frames_train, frames_test=self.frames_test, size=self.size,
                                tau=tau, kernel=self.kernel, min_area=self.min_area, empty_mask=self.empty_mask,
                                diff_mode=self.diff_mode, camera_motion=self.camera_motion,
                                normalize_brightness=self.normalize_brightness, decoder=self.decoder,
                                workers=self.workers, limit=self.limit, overwrite=self.overwrite)


@dataclass(frozen=True)
class AblateConfig:
    """``fda ablate``: the same budget with masks and without (``--no-alpha``), evaluated on the same split."""

    shards_dir: str
    out: str = "ablate"
    split: str = "train"
    eval_split: str = "test"
    model: str = "ViT-B-32"
    pretrained: Optional[str] = "openai"
    steps: Optional[int] = None
    epochs: int = 5
    batch_size: int = 128
    lr: float = 1e-6
    alpha_lr: float = 1e-4
    weight_decay: float = 0.2
    seeds: str = "0"
    train_workers: int = 4
    eval_batch_size: int = 32
    device: str = "auto"

    def __post_init__(self) -> None:
        _choice("split", self.split, SPLITS)
        _choice("eval_split", self.eval_split, SPLITS)
        _budget_checks(self)

    @property
    def seed_list(self) -> Tuple[int, ...]:
        """Training seeds."""
        return parse_seeds(self.seeds)


BENCH_ARMS = ("masks", "no-alpha", "full", "shuffled", "compensated")
MASK_SETTINGS = ("plain", "compensated", "normalised", "both")


def parse_names(value: str, option: str, choices: Sequence[str]) -> Tuple[str, ...]:
    """Turn ``"motion,null"`` into ``("motion", "null")`` (order kept, repeats dropped), each one of ``choices``."""
    parts = tuple(dict.fromkeys(p.strip() for p in str(value).split(",") if p.strip()))
    bad = [p for p in parts if p not in choices]
    if not parts or bad:
        raise ConfigError(f"{option} must be a comma list of {', '.join(choices)}, got {value!r}")
    return parts


def _scene_checks(cfg: Any) -> None:
    """Shared checks of the generated scenes and their preprocessing (``fda bench-motion``, ``fda bench-masks``)."""
    _require(isinstance(cfg.data_seed, int) and cfg.data_seed >= 0, "data_seed", cfg.data_seed, "an integer >= 0")
    _require(isinstance(cfg.size, int) and 16 <= cfg.size <= 1024 and cfg.size % 2 == 0, "size", cfg.size,
             "an even integer in 16..1024")
    _require(isinstance(cfg.fps, int) and 1 <= cfg.fps <= 60, "fps", cfg.fps, "an integer in 1..60")
    _require(isinstance(cfg.seconds, (int, float)) and 0 < cfg.seconds <= 60 and cfg.fps * cfg.seconds >= 2,
             "seconds", cfg.seconds, f"in (0, 60] and long enough for 2 frames at --fps {cfg.fps}")
    _require(isinstance(cfg.frames, int) and 2 <= cfg.frames <= MAX_FRAMES, "frames", cfg.frames,
             f"an integer in 2..{MAX_FRAMES}")
    _require(0 <= cfg.tau <= 255, "tau", cfg.tau, "in 0..255 (grey levels)")
    _require(cfg.workers >= 0, "workers", cfg.workers, ">= 0 (0: all cores)")


@dataclass(frozen=True)
class BenchMotionConfig:
    """``fda bench-motion``: the masks ablation on the benchmark scenes, with controls, over several seeds.

    Every set is generated (``fda generate --kind``), preprocessed once, and trained per arm and seed with the same
    budget; arms ``full`` and ``shuffled`` train on copies of the shards whose masks are all ones or another clip's.
    """

    out: str = "bench-motion"
    sets: str = "motion,null,appearance"
    arms: str = "masks,no-alpha,full,shuffled"
    seeds: str = "0,1,2"
    condition: str = "still"
    data_seed: int = 0
    train_videos: int = 192
    test_videos: int = 64
    size: int = 64
    fps: int = 2
    seconds: float = 3.0
    frames: int = 4
    tau: float = 25.0
    model: str = "fda-small"
    pretrained: Optional[str] = None
    steps: Optional[int] = 150
    epochs: int = 1
    batch_size: int = 16
    lr: float = 1e-3
    alpha_lr: float = 1e-3
    weight_decay: float = 0.0
    train_workers: int = 0
    eval_batch_size: int = 64
    device: str = "auto"
    workers: int = 0

    def __post_init__(self) -> None:
        parse_names(self.sets, "--sets", BENCH_KINDS)
        _choice("condition", self.condition, SCENE_CONDITIONS)
        arms = parse_names(self.arms, "--arms", BENCH_ARMS)
        _require(len(arms) >= 2 and "no-alpha" in arms, "arms", self.arms,
                 "a comma list holding no-alpha (the reference) and at least one other arm")
        for name in ("train_videos", "test_videos"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value >= 4 and value % 2 == 0, name, value,
                     "an even integer >= 4 (clips come in twins)")
        _require(self.batch_size <= self.train_videos, "batch_size", self.batch_size,
                 f"<= --train-videos ({self.train_videos}): a batch never holds a video twice")
        _scene_checks(self)
        _budget_checks(self)

    @property
    def set_list(self) -> Tuple[str, ...]:
        """The scene kinds, in the order given."""
        return parse_names(self.sets, "--sets", BENCH_KINDS)

    @property
    def arm_list(self) -> Tuple[str, ...]:
        """The arms, in the order given."""
        return parse_names(self.arms, "--arms", BENCH_ARMS)

    @property
    def seed_list(self) -> Tuple[int, ...]:
        """Training seeds."""
        return parse_seeds(self.seeds)


@dataclass(frozen=True)
class BenchMasksConfig:
    """``fda bench-masks``: mask quality against ground truth, per scene condition and mask setting."""

    out: str = "bench-masks"
    conditions: str = "still,pan,zoom,shake,flicker,noise,compression"
    settings: str = "plain,compensated,normalised,both"
    videos: int = 32
    size: int = 64
    fps: int = 2
    seconds: float = 3.0
    frames: int = 6
    tau: float = 25.0
    data_seed: int = 0
    workers: int = 0

    def __post_init__(self) -> None:
        parse_names(self.conditions, "--conditions", SCENE_CONDITIONS)
        parse_names(self.settings, "--settings", MASK_SETTINGS)
        _require(isinstance(self.videos, int) and self.videos >= 2 and self.videos % 2 == 0, "videos", self.videos,
                 "an even integer >= 2 (clips come in twins)")
        _scene_checks(self)

    @property
    def condition_list(self) -> Tuple[str, ...]:
        """The scene conditions, in the order given."""
        return parse_names(self.conditions, "--conditions", SCENE_CONDITIONS)

    @property
    def setting_list(self) -> Tuple[str, ...]:
        """The mask settings, in the order given."""
        return parse_names(self.settings, "--settings", MASK_SETTINGS)
