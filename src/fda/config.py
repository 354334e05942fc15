"""Stage configurations: frozen dataclasses, validated once, each field declared once for the CLI too.

A field carries its command-line form in its metadata (:func:`opt`): help, choices (the constants it is validated
against), spelling (``frames_train`` is ``--frames-train`` unless told otherwise), deprecated spellings, and
whether it is a positional argument. ``fda.cli`` builds every command's options from its config class, so the name,
the type and the default are written here only. A command that combines stages holds their configs (:func:`nested`):
``fda sweep`` holds a :class:`PreprocessConfig` and a :class:`Budget`, so a new preprocess or train option reaches it
with no new code. Validation raises :class:`fda.errors.ConfigError` with a one-line message naming the option, the
value and the fix.
"""

import dataclasses
import os
import typing
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from fda.errors import ConfigError, path_error

LAYOUTS = ("msrvtt", "msvd", "activitynet", "didemo", "lsmdc", "folder")
MSRVTT_TRAIN_LISTS = ("9k", "7k")
SPLITS = ("train", "val", "test")
DECODERS = ("pyav",)
ENGINES = ("local", "ray")
EMPTY_MASKS = ("full", "zero")
DIFF_MODES = ("adjacent", "sampled")
CAMERA_MOTIONS = ("none", "compensate")
MASK_RULES = ("diff", "flow", "mv")  # the keys of fda.pipeline.mask_rules.MASK_RULES (a test checks they agree)
FLOW_THRESHOLD = 1.0  # px; fda bench-masks chose it (docs/MASKS.md)
MAX_FRAMES = 99  # member names carry two digits: f00 ... f98


def flag(name: str) -> str:
    """The CLI option for a config field: ``frames_train`` -> ``--frames-train``, ``n`` -> ``-n``."""
    return ("-" if len(name) == 1 else "--") + name.replace("_", "-")


# --- declaring options --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Opt:
    """How one config field appears on the command line (kept in the field's metadata under ``"cli"``).

    Attributes:
        help: the help line.
        choices: the allowed values, the same constant ``__post_init__`` validates against.
        flag: the option's spelling when it is not :func:`flag` of the field name.
        aliases: old spellings, still accepted (hidden) with a deprecation warning.
        argument: a positional argument (a tuple-typed one takes any number of values).
        folder: the value names a folder (an existing file there is a usage error).
        auto: the option also takes the word ``auto`` (the field's ``None``: the stage chooses and records it).
    """

    help: str
    choices: Optional[Tuple[str, ...]] = None
    flag: Optional[str] = None
    aliases: Tuple[str, ...] = ()
    argument: bool = False
    folder: bool = False
    auto: bool = False


@dataclass(frozen=True)
class Nest:
    """A config held by another one (metadata ``"nest"``): its fields become the outer command's options.

    Attributes:
        exclude: fields the outer config sets itself (no option; the nested default's value stays); a dotted name
            (``train.epochs``) reaches into a config nested in this one.
        aliases: deprecated spellings per field, replacing the field's own (which may mean something else here).
    """

    exclude: Tuple[str, ...] = ()
    aliases: Mapping[str, Tuple[str, ...]] = dataclasses.field(default_factory=dict)


def opt(default: Any = dataclasses.MISSING, help: str = "", **spec: Any) -> Any:
    """A dataclass field with its CLI form (:class:`Opt`); no ``default`` makes a required option or argument."""
    meta = {"cli": Opt(help, **spec)}
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def nested(default: Any = dataclasses.MISSING, *, exclude: Sequence[str] = (),
           aliases: Optional[Mapping[str, Tuple[str, ...]]] = None) -> Any:
    """A field holding another (frozen) config; ``default`` is the instance whose values the options default to."""
    meta = {"nest": Nest(tuple(exclude), dict(aliases or {}))}
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class CliField:
    """One option or argument of a command, found by :func:`cli_fields`.

    Attributes:
        path: field names from the command's config down to this field (``("budget", "train", "lr")``).
        type: the field's annotation.
        default: its default (from the nested default instance, if any), or ``dataclasses.MISSING``.
        spec: its :class:`Opt`.
        flag: its spelling (``--lr``, ``-k``).
        aliases: its deprecated spellings in this command.
    """

    path: Tuple[str, ...]
    type: Any
    default: Any
    spec: Opt
    flag: str
    aliases: Tuple[str, ...]

    @property
    def dest(self) -> str:
        """The keyword the command receives: the path joined with ``__`` (``budget__train__lr``)."""
        return "__".join(self.path)


def _inner_nest(outer: "Nest", f: "dataclasses.Field[Any]") -> "Nest":
    """The nesting of field ``f``'s config, with the exclusions the outer config names by dotted path added
    (``exclude=("train.epochs",)`` on a held :class:`Budget` drops its template's ``--epochs``)."""
    own: Nest = f.metadata["nest"]
    deeper = tuple(e.split(".", 1)[1] for e in outer.exclude if e.startswith(f.name + "."))
    return dataclasses.replace(own, exclude=own.exclude + deeper) if deeper else own


def cli_fields(cls: type, defaults: Any = None, path: Tuple[str, ...] = (), nest: Nest = Nest()) -> List[CliField]:
    """Every option and argument of ``cls``, in field order, nested configs flattened in place.

    Args:
        cls: a config dataclass whose fields carry :func:`opt` or :func:`nested` metadata.
        defaults: an instance of ``cls`` whose values are the defaults (None: the fields' own defaults).
        path: the field names leading to ``cls``.
        nest: how ``cls`` is nested (its excluded fields and alias overrides).
    """
    out: List[CliField] = []
    hints = typing.get_type_hints(cls)  # the annotations as types, also under "from __future__ import annotations"
    for f in dataclasses.fields(cls):
        if f.name in nest.exclude:
            continue
        default = getattr(defaults, f.name) if defaults is not None else _field_default(f)
        if "nest" in f.metadata:
            inner = None if default is dataclasses.MISSING else default
            out += cli_fields(hints[f.name], inner, path + (f.name,), _inner_nest(nest, f))
            continue
        spec = f.metadata.get("cli")
        if spec is None:
            raise TypeError(f"{cls.__name__}.{f.name} has no opt(...) metadata")
        aliases = nest.aliases.get(f.name, spec.aliases)
        out.append(CliField(path + (f.name,), hints[f.name], default, spec, spec.flag or flag(f.name), tuple(aliases)))
    return out


def _field_default(f: "dataclasses.Field[Any]") -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def from_options(cls: type, values: Mapping[str, Any], base: Any = None, prefix: str = "") -> Any:
    """Build ``cls`` from option values keyed by :attr:`CliField.dest`; a field without a value keeps its default.

    Nested configs are built first (their own checks run, then the outer config's); a nested field with a default
    instance starts from that instance, so its excluded fields keep the values the outer config chose.

    Raises:
        ConfigError: a value fails its config's check.
    """
    kwargs: Dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        if "nest" in f.metadata:
            inner = getattr(base, f.name) if base is not None else _field_default(f)
            inner = None if inner is dataclasses.MISSING else inner
            kwargs[f.name] = from_options(typing.get_type_hints(cls)[f.name], values, inner, key + "__")
        elif key in values:
            kwargs[f.name] = values[key]
    return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)


def options_record(cfg: Any) -> Dict[str, Any]:
    """The values of ``cfg``'s command-line options, nested as the configs are (for an experiment's json): the
    fields a composed command sets itself (excluded from its options) are left out, so the record shows only what
    the user chose or left at its default."""
    out: Dict[str, Any] = {}
    for field in cli_fields(type(cfg), cfg):
        value: Any = cfg
        for name in field.path:
            value = getattr(value, name)
        node = out
        for name in field.path[:-1]:
            node = node.setdefault(name, {})
        node[field.path[-1]] = list(value) if isinstance(value, tuple) else value
    return out


# --- checks shared by several configs -----------------------------------------------------------------------------

def _require(ok: bool, field: str, value: Any, need: str) -> None:
    if not ok:
        raise ConfigError(f"{flag(field)} must be {need}, got {value!r}")


def _choice(field: str, value: Any, choices: Sequence[str]) -> None:
    _require(value in choices, field, value, "one of " + ", ".join(choices))


def _positive(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        _require(isinstance(value, int) and value >= 1, name, value, "an integer >= 1")


def _check_device_name(value: Any) -> None:
    _require(isinstance(value, str) and value.split(":")[0] in DEVICES, "device", value,
             "auto, cpu, cuda, cuda:N or mps")


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

    dataset_root: str = opt(help="The dataset's folder.", argument=True, folder=True)
    out: str = opt("shards", "Folder for shards and manifest.")
    layout: Optional[str] = opt(None, "Dataset layout (default: detected).", choices=LAYOUTS)
    msrvtt_train: str = opt("9k", "MSR-VTT training list.", choices=MSRVTT_TRAIN_LISTS)
    captions: Optional[str] = opt(None, "Captions file (CSV, TSV or JSONL) for a folder of videos.")
    split: Optional[str] = opt(None, "Comma list of splits to write (default: all).")
    frames_train: int = opt(6, "Frames sampled per training clip.")
    frames_test: int = opt(12, "Frames sampled per val/test clip.")
    size: int = opt(224, "Short-side resize then center crop, in pixels.")
    tau: float = opt(25.0, "Frame-difference threshold in grey levels.")
    kernel: int = opt(3, "Morphology kernel (closing then opening); 0 disables.")
    min_area: int = opt(16, "Drop moving regions smaller than this many pixels.")
    empty_mask: str = opt("full", "Mask for a frame with no motion left.", choices=EMPTY_MASKS)
    diff_mode: str = opt("adjacent", "Difference with the adjacent decoded frame or the adjacent sampled one.",
                         choices=DIFF_MODES)
    camera_motion: str = opt("none", "none: the paper's plain difference; compensate: fit the camera's motion between "
                             "frame and partner (tracked corners, RANSAC similarity), warp, and difference only where "
                             "both see the scene (an implausible fit falls back to the plain rule and is recorded).",
                             choices=CAMERA_MOTIONS)
    normalize_brightness: bool = opt(False, "Match the partner's brightness to the frame's before differencing "
                                     "(flicker, exposure changes).")
    # --- mask rules (issue 22): recorded only when not diff, so the default writes the bytes it always did ---
    mask_rule: str = opt("diff", "The dynamic-region estimate: diff (the paper's frame difference), flow (dense "
                         "optical flow, DIS), mv (the codec's motion vectors, read in the same decode; frames without "
                         "them use diff). See docs/MASKS.md.", choices=MASK_RULES)
    flow_threshold: float = opt(FLOW_THRESHOLD, "--mask-rule flow and mv: a pixel (block) moves when its motion, less "
                                "the camera's with --camera-motion compensate, exceeds this many stored pixels.")
    # --- end of the mask rules ---
    jpeg_quality: int = opt(90, "JPEG quality of stored frames.")
    samples_per_shard: int = opt(200, "Videos per tar shard.")
    decoder: str = opt("pyav", "Video decoder (in-process FFmpeg through PyAV).", choices=DECODERS)
    min_decodable: float = opt(0.95, "A clip whose decodable frames are fewer than this fraction of its frames is a "
                               "recorded failure.")
    skip_damaged_frames: bool = opt(False, "Sample a damaged clip only from frames that decoded cleanly from clean "
                                    "references (default: any decoded frame; tainted ones are marked in the json).")
    video_timeout: float = opt(600.0, "Seconds one video may take to decode before its worker is replaced and the "
                               "video recorded as timed out (0: no limit).")
    workers: int = opt(0, "Worker processes (0: all cores).")
    engine: str = opt("local", "Run shard tasks in a local process pool or on Ray.", choices=ENGINES)
    ray_address: Optional[str] = opt(None, "Ray cluster address (with --engine ray; default: local Ray).")
    max_failure_rate: float = opt(0.01, "Exit non-zero when more videos than this fraction fail.")
    limit: Optional[int] = opt(None, "Take only the first N videos of each split.")
    overwrite: bool = opt(False, "Delete earlier output in --out and start over.")
    retry_failed: bool = opt(False, "Also redo finished shards that recorded failed videos (changed inputs are redone "
                             "anyway).")
    full_duration: bool = opt(False, "didemo: sample the whole clip (default: only frames presented before 30 s, the "
                              "annotated part).")

    def __post_init__(self) -> None:
        if self.layout is not None:
            _choice("layout", self.layout, LAYOUTS)
        _choice("msrvtt_train", self.msrvtt_train, MSRVTT_TRAIN_LISTS)
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
        _choice("mask_rule", self.mask_rule, MASK_RULES)
        _require(isinstance(self.flow_threshold, (int, float)) and 0 < self.flow_threshold <= 100, "flow_threshold",
                 self.flow_threshold, "in (0, 100] pixels")
        object.__setattr__(self, "flow_threshold", float(self.flow_threshold))
        _require(1 <= self.jpeg_quality <= 100, "jpeg_quality", self.jpeg_quality, "in 1..100")
        _require(self.samples_per_shard >= 1, "samples_per_shard", self.samples_per_shard, ">= 1")
        _choice("decoder", self.decoder, DECODERS)
        _require(isinstance(self.min_decodable, (int, float)) and 0.0 <= self.min_decodable <= 1.0, "min_decodable",
                 self.min_decodable, "in 0..1 (the fraction of a clip's frames that must decode)")
        _require(isinstance(self.video_timeout, (int, float)) and self.video_timeout >= 0, "video_timeout",
                 self.video_timeout, ">= 0 seconds (0: no limit)")
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
        fields = {k: getattr(self, k) for k in DATA_FIELDS}
        for name in OPTIONAL_DATA_FIELDS:  # recorded only when on: every other shard set keeps its fingerprint
            if getattr(self, name):
                fields[name] = True
        if self.mask_rule != "diff":  # likewise (issue 22): a diff shard set keeps its fingerprint
            fields.update(mask_rule=self.mask_rule, flow_threshold=self.flow_threshold)
        return fields


DATA_FIELDS = ("layout", "msrvtt_train", "captions", "split", "frames_train", "frames_test", "size", "tau", "kernel",
               "min_area", "empty_mask", "diff_mode", "camera_motion", "normalize_brightness", "jpeg_quality",
               "samples_per_shard", "limit", "decoder", "min_decodable")
"""The :class:`PreprocessConfig` fields that decide the bytes of a shard set (plus those of
:data:`OPTIONAL_DATA_FIELDS` that are on, and ``mask_rule`` and ``flow_threshold`` when the rule is not ``diff``)."""
OPTIONAL_DATA_FIELDS = ("full_duration", "skip_damaged_frames")
"""Flags that decide the bytes of a shard set when on, recorded only then (shard sets written before they existed
keep their fingerprints)."""
SAMPLE_FIELDS = (tuple(f for f in DATA_FIELDS if f not in ("split", "samples_per_shard")) + OPTIONAL_DATA_FIELDS
                 + ("mask_rule", "flow_threshold"))
"""The fields that decide what a sample holds (not which splits were written or how they are cut into shards): a
model trained on a shard set has learned from them."""


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

    out_dir: str = opt(help="Folder for the data set.", argument=True, folder=True)
    kind: str = opt("demo", "demo: captions tell colour+shape+motion apart. Benchmark scenes (twins that differ in one "
                    "thing): motion: which object moves, captioned by the mover; null: the captioned object's colour, "
                    "the mover drawn independently; appearance: the captioned still object's colour, the same "
                    "distractor moves.", choices=GENERATE_KINDS)
    train: int = opt(24, "Training videos.")
    test: int = opt(12, "Test videos (1k-A style).")
    seed: int = opt(0, "Data-set seed.")
    size: Optional[str] = opt(None, "Frame size WIDTHxHEIGHT (even) [default: 160x120 for demo, 64x64 else].")
    fps: Optional[int] = opt(None, "Frame rate [default: 10 for demo, 2 else].")
    seconds: float = opt(3.0, "Clip length.")
    condition: str = opt("still", "Benchmark scenes only: still camera, or what real footage does: pan, zoom, shake (a "
                         "textured background), flicker, noise, compression.", choices=SCENE_CONDITIONS)

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
    ``workers`` (DataLoader workers) keeps its name in the recorded configs (checkpoints, ``train_config.json``);
    the CLI spells it ``--loader-workers``, since preprocess's ``--workers 0`` means every core.
    """

    shards_dir: str = opt(help="A shard set written by fda preprocess.", argument=True, folder=True)
    out: Optional[str] = opt(None, "Run folder (default: a new folder under ./runs/); rerunning into one that has "
                             "checkpoints resumes it.")
    split: str = opt("train", "Split to train on.", choices=SPLITS)
    val_split: str = opt("auto", "Split for periodic validation. auto: val, which keeps best.pt by its R@1; without "
                         "val, test for the curve only, no best.pt (fda eval reads the last checkpoint). test: keep "
                         "best.pt by test R@1, as papers that select on test do (fda eval on test says so).",
                         choices=VAL_SPLITS)
    val_from_train: int = opt(0, "Hold out N training videos (the same N for the same set: chosen by a hash of their "
                              "keys; they do not train) to validate on and keep best.pt by: a proper best.pt for a set "
                              "without a val split. 0: off.")
    model: str = opt("ViT-B-32", "Architecture: ViT-B-32, ViT-B-16, ViT-L-14, fda-small, fda-tiny, or a config .json.")
    pretrained: Optional[str] = opt("openai", "CLIP weights: an open_clip tag (downloaded), a local FILE, or 'none' "
                                    "for random init.")
    alpha_checkpoint: Optional[str] = opt(None, "Alpha-CLIP release checkpoint of the vision tower.")
    no_alpha: bool = opt(False, "Train the plain CLIP meanP baseline (no alpha path).")
    captions: str = opt("all", "all: every (video, caption) pair per epoch; random: one caption per visit.",
                        choices=CAPTION_MODES)
    batch_size: int = opt(128, "Pairs per process per micro-step.")
    accum_steps: int = opt(1, "Micro-steps per optimiser step (gradient accumulation).")
    workers: int = opt(4, "DataLoader worker processes per training process (0: load in the main process; unlike "
                       "preprocess --workers, 0 is not 'all cores').", flag="--loader-workers", aliases=("--workers",))
    shuffle_buffer: int = opt(500, "Videos in each stream's shuffle buffer.")
    epochs: int = opt(5, "Run length in epochs (from the manifest's counts).")
    max_steps: Optional[int] = opt(None, "Run length in optimiser steps (overrides --epochs).")
    lr: Optional[float] = opt(None, "Learning rate of CLIP weights. auto: 1e-6 (CLIP4Clip's) from pretrained weights, "
                              "1e-3 (the demo's) from random weights; train_config.json records the rate used.",
                              auto=True)
    alpha_lr: float = opt(1e-4, "Learning rate of the alpha conv.")
    weight_decay: float = opt(0.2, "AdamW weight decay (not on gains, biases, embeddings, logit scale).")
    warmup_steps: Optional[int] = opt(None, "Linear warmup steps (default: 10% of the run).")
    grad_clip: float = opt(1.0, "Clip the gradient norm to this (0: off).")
    label_smoothing: float = opt(0.0, "Label smoothing of the contrastive loss (Alpha-CLIP used 0.1).")
    freeze_text: bool = opt(False, "Keep the text tower fixed.")
    augment: str = opt("none", "crop-flip: one random resized crop + flip per clip, frames and masks alike.",
                       choices=AUGMENTS)
    precision: str = opt("auto", "auto: bf16 autocast on CUDA, fp32 elsewhere.", choices=PRECISIONS)
    grad_checkpointing: bool = opt(False, "Recompute activations to save memory.")
    device: str = opt("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")
    seed: int = opt(0, "Seed of data order and draws.")
    save_every: int = opt(1000, "Checkpoint every N steps (and at the end).")
    keep_last: int = opt(3, "Step checkpoints to keep (best.pt is kept apart).")
    log_every: int = opt(10, "Console line every N steps (metrics.jsonl gets every step).")
    val_every: int = opt(0, "Validate every N steps (0: at each epoch end).")
    tensorboard: bool = opt(True, "Write TensorBoard events to RUN_DIR/tb.")
    resume: Optional[str] = opt(None, "Checkpoint file or run folder to resume (default: --out's own).")

    def __post_init__(self) -> None:
        _choice("split", self.split, SPLITS)
        _choice("val_split", self.val_split, VAL_SPLITS)
        _choice("captions", self.captions, CAPTION_MODES)
        _choice("augment", self.augment, AUGMENTS)
        _choice("precision", self.precision, PRECISIONS)
        _check_device_name(self.device)
        _positive(self, "batch_size", "accum_steps", "epochs", "log_every", "keep_last", "save_every")
        _require(isinstance(self.workers, int) and self.workers >= 0, "loader_workers", self.workers,
                 ">= 0 (0: load in the main process)")
        _require(self.shuffle_buffer >= 1, "shuffle_buffer", self.shuffle_buffer, ">= 1 video (1: no shuffle)")
        _require(self.max_steps is None or self.max_steps >= 1, "max_steps", self.max_steps, ">= 1")
        _require(self.warmup_steps is None or self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, ">= 0")
        for name in ("lr", "alpha_lr", "weight_decay", "grad_clip"):
            value = getattr(self, name)
            if value is None and name == "lr":
                continue  # auto
            _require(value >= 0 and value == value and value != float("inf"), name, value, "a finite number >= 0")
        _require(0.0 <= self.label_smoothing < 1.0, "label_smoothing", self.label_smoothing, "in [0, 1)")
        _require(self.val_every >= 0, "val_every", self.val_every, ">= 0 (0: at each epoch end)")
        _require(isinstance(self.val_from_train, int) and self.val_from_train >= 0, "val_from_train",
                 self.val_from_train, "an integer >= 0 (0: off)")
        if self.val_from_train and self.val_split != "auto":
            raise ConfigError(f"--val-from-train validates on the videos it holds out; --val-split {self.val_split} "
                              f"would validate elsewhere: drop one of them")
        if self.no_alpha and self.alpha_checkpoint:
            raise ConfigError("--alpha-checkpoint has no use with --no-alpha: drop one of them")


SEARCH_TARGETS = ("videos", "captions")
INDEX_KINDS = ("none", "hnsw")
SHARDS_HELP = ("Shard set folder (default: the one the run or checkpoint was trained on, as its train_config.json "
               "records, else ./shards).")
PRETRAINED_HELP = "Its weights: an open_clip tag (openai), a file, or 'none' for random init (with --seed)."
ALPHA_HELP = "Official Alpha-CLIP vision weights over --pretrained."


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

    split: str = opt("test", "Split to evaluate.", choices=SPLITS)
    shards: Optional[str] = opt(None, SHARDS_HELP)  # None: the shard set the run trained on, else ./shards
    run: Optional[str] = opt(None, "Run folder: evaluate its best.pt (kept only when a val split chose it), else its "
                             "last checkpoint (default: newest run).")
    checkpoint: Optional[str] = opt(None, "An fda checkpoint file.")
    model: Optional[str] = opt(None, "Evaluate an untrained model (zero-shot), e.g. ViT-B-32 or fda-tiny.")
    pretrained: Optional[str] = opt(None, PRETRAINED_HELP)
    alpha_checkpoint: Optional[str] = opt(None, ALPHA_HELP)
    runs_dir: str = opt("runs", "Where runs are looked for.")
    frames: Optional[int] = opt(None, "Frames per clip the shards must hold (default: what the shards' manifest "
                                "says).")  # None: whatever the shards hold
    batch_size: int = opt(32, "Clips per forward pass.")
    text_batch_size: int = opt(256, "Captions per forward pass.")
    workers: int = opt(2, "Image decoding threads (0: decode in the main thread).", flag="--decode-threads",
                       aliases=("--workers",))
    device: str = opt("auto", "auto, cpu, cuda, cuda:N or mps.")
    dsl: bool = opt(False, "Add dual-softmax (DSL) numbers in separate columns.")
    baseline: bool = opt(False, "Also evaluate without the alpha channel (plain CLIP meanP), side by side.")
    out: Optional[str] = opt(None, "Report folder (default: the run folder).")
    cache: bool = opt(True, "Reuse features cached for the same model and shards.")
    seed: int = opt(0, "Initialisation seed of a model without weights.")

    def __post_init__(self) -> None:
        _choice("split", self.split, SPLITS)
        _model_source_checks(self)
        _require(self.frames is None or (isinstance(self.frames, int) and 1 <= self.frames <= MAX_FRAMES), "frames",
                 self.frames, f"an integer in 1..{MAX_FRAMES}")
        _positive(self, "batch_size", "text_batch_size")
        _require(isinstance(self.workers, int) and self.workers >= 0, "workers", self.workers,
                 ">= 0 decoding threads (0: decode in the main thread)")
        _check_device_name(self.device)


@dataclass(frozen=True)
class EmbedConfig:
    """``fda embed``: video and caption embeddings of a shard set, written in chunks for ``fda search``."""

    out: str = opt(help="Folder for the embeddings (EMB_DIR).")
    shards: Optional[str] = opt(None, SHARDS_HELP)  # None: the shard set the run trained on, else ./shards
    split: Optional[str] = opt(None, "Comma list of splits (default: all).")
    run: Optional[str] = opt(None, "Run folder: use its best.pt (kept only when a val split chose it), else its last "
                             "checkpoint.")
    checkpoint: Optional[str] = opt(None, "An fda checkpoint file.")
    model: Optional[str] = opt(None, "An untrained model name (ViT-B-32, fda-tiny, ...).")
    pretrained: Optional[str] = opt(None, PRETRAINED_HELP)
    alpha_checkpoint: Optional[str] = opt(None, ALPHA_HELP)
    runs_dir: str = opt("runs", "Where runs are looked for.")
    batch_size: int = opt(32, "Clips per forward pass.")
    text_batch_size: int = opt(256, "Captions per forward pass.")
    chunk_size: int = opt(65536, "Rows per .npy file.")
    captions: bool = opt(True, "Also embed the captions.")
    index: str = opt("none", "Also build a faiss HNSW index of the videos (optional extra fda[faiss]; for > 1M "
                     "videos).", choices=INDEX_KINDS)
    workers: int = opt(2, "Image decoding threads (0: decode in the main thread).", flag="--decode-threads",
                       aliases=("--workers",))
    device: str = opt("auto", "auto, cpu, cuda, cuda:N or mps.")
    seed: int = opt(0, "Initialisation seed of a model without weights.")
    overwrite: bool = opt(False, "Replace earlier embeddings in --out.")

    def __post_init__(self) -> None:
        parse_splits(self.split)
        _model_source_checks(self)
        _positive(self, "batch_size", "text_batch_size", "chunk_size")
        _choice("index", self.index, INDEX_KINDS)
        _require(isinstance(self.workers, int) and self.workers >= 0, "workers", self.workers, ">= 0")
        _check_device_name(self.device)

    @property
    def splits(self) -> Optional[Tuple[str, ...]]:
        """Selected splits, or ``None`` for every split of the shard set."""
        return parse_splits(self.split)


@dataclass(frozen=True)
class SearchConfig:
    """``fda search``: nearest videos (or captions) to a text query or to a video, from ``fda embed`` output."""

    emb_dir: str = opt(help="Embeddings written by fda embed.", argument=True, folder=True)
    query: Optional[str] = opt(None, "Text to search for.", argument=True)
    video: Optional[str] = opt(None, "Search with this video's embedding instead of a text query.")
    k: int = opt(10, "Results to show.")
    target: str = opt("videos", "What to search.", choices=SEARCH_TARGETS)
    exact: bool = opt(False, "Flat exact search even when a faiss index exists.")
    device: str = opt("auto", "Where the text encoder runs.")
    json: bool = opt(False, "Print one JSON document ({query, video, target, hits: [{rank, id, score, text}]}) "
                     "instead.")

    def __post_init__(self) -> None:
        if (self.query is None) == (self.video is None):
            raise ConfigError("give a text QUERY or --video ID (exactly one)")
        if self.query is not None and not self.query.strip():
            raise ConfigError("QUERY is empty: give some words to search for, or --video ID")
        _require(isinstance(self.k, int) and self.k >= 1, "k", self.k, "an integer >= 1")
        _choice("target", self.target, SEARCH_TARGETS)
        _check_device_name(self.device)


# --- visualize, masks-stats ---------------------------------------------------------------------------------------
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


def parse_names(value: str, option: str, choices: Sequence[str]) -> Tuple[str, ...]:
    """Turn ``"motion,null"`` into ``("motion", "null")`` (order kept, repeats dropped), each one of ``choices``."""
    parts = tuple(dict.fromkeys(p.strip() for p in str(value).split(",") if p.strip()))
    bad = [p for p in parts if p not in choices]
    if not parts or bad:
        raise ConfigError(f"{option} must be a comma list of {', '.join(choices)}, got {value!r}")
    return parts


def _name_list(field: str, choices: Sequence[str]) -> Any:
    """A property: the comma list in ``field`` as a tuple (:func:`parse_names`), in the order given."""
    return property(lambda self: parse_names(getattr(self, field), flag(field), choices),
                    doc=f"The values of {flag(field)}, in the order given.")


@dataclass(frozen=True)
class VisualizeConfig:
    """``fda visualize``: per video a PNG sheet of frames with the mask overlaid, an animation, an index.html."""

    shards_dir: str = opt(help="A shard set written by fda preprocess.", argument=True, folder=True)
    out: str = opt("viz", "Folder for the sheets and index.html.")
    split: str = opt("test", "Split to draw.", choices=SPLITS)
    n: int = opt(16, "Videos to draw (the first N).")
    video: Tuple[str, ...] = opt((), "Draw this video id (or sample key) instead; repeat for more.")
    tile: int = opt(128, "Side of each picture, px.")
    animation: str = opt("gif", "Also write the sequence as a GIF (Pillow) or an MP4 (ffmpeg).", choices=ANIMATIONS)
    fps: float = opt(3.0, "Frame rate of the animation.")

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

    shards_dirs: Tuple[str, ...] = opt(help="Shard sets written by fda preprocess.", argument=True, folder=True)
    out: str = opt("mask_stats.png", "Histogram PNG (numbers go beside it as .json).")
    split: Optional[str] = opt(None, "Comma list of splits (default: all).")
    bins: int = opt(20, "Histogram bins.")

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


# --- the experiments: sweep, ablate, bench-motion, bench-masks, demo ------------------------------------------------
RUN_FIELDS = ("shards_dir", "out", "split", "val_split", "val_from_train", "no_alpha", "alpha_checkpoint", "captions",
              "shuffle_buffer", "max_steps", "seed", "save_every", "keep_last", "log_every", "val_every", "tensorboard",
              "resume")
"""The :class:`TrainConfig` fields an experiment sets for each run itself (where it reads and writes, its arm, seed
and length, how often it logs and saves); every other train option reaches the experiments through :class:`Budget`.
``captions`` stays out because ``fda sweep --captions`` is the preprocess captions file."""


@dataclass(frozen=True)
class Budget:
    """The training budget every arm of an experiment gets (``fda sweep``, ``ablate``, ``demo``, ``bench-motion``).

    ``train`` is the template of every run's :class:`TrainConfig`: the options of ``fda train`` but
    :data:`RUN_FIELDS`, with the experiment's defaults. ``steps`` (None: ``epochs``) is each run's ``max_steps``.
    """

    train: TrainConfig = nested(TrainConfig(""), exclude=RUN_FIELDS, aliases={"workers": ("--train-workers",)})
    steps: Optional[int] = opt(None, "Training steps per run (sweep and ablate: none given trains --epochs).")
    eval_batch_size: int = opt(32, "Clips per forward pass in eval.")
    seeds: str = opt("0", "Comma list of training seeds; each arm is trained once per seed (mean±std).")

    def __post_init__(self) -> None:
        parse_seeds(self.seeds)
        _require(self.steps is None or (isinstance(self.steps, int) and self.steps >= 1), "steps", self.steps,
                 "an integer >= 1 (or leave it out to train --epochs)")
        _positive(self, "eval_batch_size")

    @property
    def seed_list(self) -> Tuple[int, ...]:
        """Training seeds."""
        return parse_seeds(self.seeds)

    def run_config(self, shards_dir: str, out: str, *, seed: int, no_alpha: bool, **fixed: Any) -> TrainConfig:
        """The :class:`TrainConfig` of one run: the template, this run's data, arm and seed, no periodic validation,
        one checkpoint kept (written at the end of a ``steps`` run, every 1000 steps of an epochs run); ``fixed``
        sets more of :data:`RUN_FIELDS` (``split``, ``shuffle_buffer``)."""
        steps = self.steps
        return dataclasses.replace(self.train, shards_dir=shards_dir, out=out, no_alpha=no_alpha, seed=seed,
                                   val_split="none", max_steps=steps, save_every=steps or 1000, keep_last=1,
                                   log_every=max(1, (steps or 100) // 5), tensorboard=False, **fixed)


SCENE_BUDGET = Budget(TrainConfig("", model="fda-small", pretrained=None, batch_size=16, workers=0, epochs=1, lr=1e-3,
                                  alpha_lr=1e-3, weight_decay=0.0),
                      steps=150, eval_batch_size=64, seeds="0,1,2")
"""The benchmark scenes' budget: the small random model trained for a few minutes on a CPU."""


@dataclass(frozen=True)
class Scenes:
    """Generated benchmark clips and their preprocessing (``fda bench-motion``, ``bench-masks``, ``demo``)."""

    size: int = opt(64, "Square frame size of the clips and the shards.")
    fps: int = opt(2, "Frame rate of the clips.")
    seconds: float = opt(3.0, "Clip length.")
    frames: int = opt(4, "Frames sampled per clip (train and test).")
    tau: float = opt(25.0, "Mask threshold.")
    data_seed: int = opt(0, "Seed of the generated clips (training seeds: --seeds).")
    workers: int = opt(0, "Preprocess processes (0: all cores).")

    def __post_init__(self) -> None:
        _require(isinstance(self.data_seed, int) and self.data_seed >= 0, "data_seed", self.data_seed,
                 "an integer >= 0")
        _require(isinstance(self.size, int) and 16 <= self.size <= 1024 and self.size % 2 == 0, "size", self.size,
                 "an even integer in 16..1024")
        _require(isinstance(self.fps, int) and 1 <= self.fps <= 60, "fps", self.fps, "an integer in 1..60")
        _require(isinstance(self.seconds, (int, float)) and 0 < self.seconds <= 60 and self.fps * self.seconds >= 2,
                 "seconds", self.seconds, f"in (0, 60] and long enough for 2 frames at --fps {self.fps}")
        _require(isinstance(self.frames, int) and 2 <= self.frames <= MAX_FRAMES, "frames", self.frames,
                 f"an integer in 2..{MAX_FRAMES}")
        _require(0 <= self.tau <= 255, "tau", self.tau, "in 0..255 (grey levels)")
        _require(self.workers >= 0, "workers", self.workers, ">= 0 (0: all cores)")

    def preprocess_config(self, dataset_root: str, out: str, **more: Any) -> PreprocessConfig:
        """The :class:`PreprocessConfig` of a generated set: these frames and tau for every split."""
        return PreprocessConfig(dataset_root=dataset_root, out=out, size=self.size, tau=self.tau,
                                frames_train=self.frames, frames_test=self.frames, workers=self.workers, **more)


@dataclass(frozen=True)
class SweepConfig:
    """``fda sweep``: preprocess once per tau (one decode), train each with the same budget and seeds, evaluate.

    ``preprocess`` holds every preprocess option but ``--out`` and ``--tau`` (each tau's shard set goes under
    ``out``). The no-mask baseline (``--no-alpha``, same budget) is trained once: the frames are the same for every
    tau.
    """

    preprocess: PreprocessConfig = nested(exclude=("out", "tau"))
    tau: str = opt("0,12.5,25,50,100", "Comma list of thresholds (grey levels).")
    out: str = opt("sweep", "Folder for shards, runs, table, figure.")
    budget: Budget = nested(Budget())
    baseline: bool = opt(True, "Also train the no-mask baseline (--no-alpha) with the same budget.")

    def __post_init__(self) -> None:
        for tau in self.taus:
            _require(0 <= tau <= 255, "tau", self.tau, "a comma list of thresholds in 0..255 (grey levels)")

    @property
    def taus(self) -> Tuple[float, ...]:
        """The thresholds, in the order given."""
        return parse_floats(self.tau, "--tau")

    def preprocess_config(self, tau: float, out: str) -> PreprocessConfig:
        """The :class:`PreprocessConfig` of one tau's shard set."""
        return dataclasses.replace(self.preprocess, tau=tau, out=out)


@dataclass(frozen=True)
class AblateConfig:
    """``fda ablate``: the same budget with masks and without (``--no-alpha``), evaluated on the same split."""

    shards_dir: str = opt(help="A shard set written by fda preprocess.", argument=True, folder=True)
    out: str = opt("ablate", "Folder for runs, table, figure.")
    split: str = opt("train", "Training split.", choices=SPLITS)
    eval_split: str = opt("test", "Split both arms are evaluated on.", choices=SPLITS)
    budget: Budget = nested(Budget())

    def __post_init__(self) -> None:
        _choice("split", self.split, SPLITS)
        _choice("eval_split", self.eval_split, SPLITS)


BENCH_ARMS = ("masks", "no-alpha", "full", "shuffled", "compensated") + MASK_RULES[1:]  # + one arm per mask rule
MASK_SETTINGS = ("plain", "compensated", "normalised", "both")


def _twin_checks(cfg: Any) -> None:
    """Clip counts of a benchmark set (``fda bench-motion``, ``fda demo``): twins, and a batch never twice a clip."""
    for name in ("train_videos", "test_videos"):
        value = getattr(cfg, name)
        _require(isinstance(value, int) and value >= 4 and value % 2 == 0, name, value,
                 "an even integer >= 4 (clips come in twins)")
    batch = cfg.budget.train.batch_size
    _require(batch <= cfg.train_videos, "batch_size", batch,
             f"<= --train-videos ({cfg.train_videos}): a batch never holds a video twice")


@dataclass(frozen=True)
class BenchMotionConfig:
    """``fda bench-motion``: the masks ablation on the benchmark scenes, with controls, over several seeds.

    Every set is generated (``fda generate --kind``), preprocessed once, and trained per arm and seed with the same
    budget; arms ``full`` and ``shuffled`` train on copies of the shards whose masks are all ones or another clip's.
    """

    out: str = opt("bench-motion", "Folder for data, shards, runs, results.")
    sets: str = opt("motion,null,appearance", "Comma list of scene kinds (see fda generate --kind).")
    arms: str = opt("masks,no-alpha,full,shuffled", "Comma list of arms: masks, no-alpha (the reference, required), "
                    "full (all-ones masks), shuffled (another clip's masks), compensated (masks made with "
                    "--camera-motion compensate), flow, mv (masks made with that --mask-rule and --camera-motion "
                    "compensate).")
    condition: str = opt("still", "Scene condition of every set (see fda generate --condition), e.g. pan for a moving "
                         "camera.", choices=SCENE_CONDITIONS)
    train_videos: int = opt(192, "Training clips per set (even: twins).")
    test_videos: int = opt(64, "Test clips per set (even: twins).")
    scenes: Scenes = nested(Scenes())
    budget: Budget = nested(SCENE_BUDGET, exclude=("train.epochs",))  # runs are --steps long

    set_list = _name_list("sets", BENCH_KINDS)
    arm_list = _name_list("arms", BENCH_ARMS)

    def __post_init__(self) -> None:
        _choice("condition", self.condition, SCENE_CONDITIONS)
        self.set_list  # parsing checks --sets
        arms = self.arm_list
        _require(len(arms) >= 2 and "no-alpha" in arms, "arms", self.arms,
                 "a comma list holding no-alpha (the reference) and at least one other arm")
        _twin_checks(self)


@dataclass(frozen=True)
class BenchMasksConfig:
    """``fda bench-masks``: mask quality against ground truth, per scene condition and mask setting."""

    out: str = opt("bench-masks", "Folder for data, shards, results.")
    conditions: str = opt(",".join(SCENE_CONDITIONS), "Comma list of scene conditions (see fda generate --condition).")
    settings: str = opt(",".join(MASK_SETTINGS), "Comma list of mask settings: plain (the paper's rule), compensated "
                        "(--camera-motion compensate), normalised (--normalize-brightness), both.")
    rules: str = opt(",".join(MASK_RULES), "Comma list of mask rules (see fda preprocess --mask-rule); flow and mv "
                     "are scored under the plain and compensated settings (brightness does not enter them).")
    videos: int = opt(32, "Motion clips per condition (even: twins).")
    scenes: Scenes = nested(Scenes(frames=6))

    condition_list = _name_list("conditions", SCENE_CONDITIONS)
    setting_list = _name_list("settings", MASK_SETTINGS)
    rule_list = _name_list("rules", MASK_RULES)

    def __post_init__(self) -> None:
        self.condition_list, self.setting_list, self.rule_list  # parsing checks them
        _require(isinstance(self.videos, int) and self.videos >= 2 and self.videos % 2 == 0, "videos", self.videos,
                 "an even integer >= 2 (clips come in twins)")


@dataclass(frozen=True)
class DemoConfig:
    """``fda demo``: a benchmark scene set -> preprocess -> train with masks and with --no-alpha -> twin accuracy.

    A controlled synthetic test of the mechanism on a small randomly initialised model, over a few seeds; the
    paper's MSR-VTT numbers need real data and CLIP weights. It is :class:`BenchMotionConfig` with one set and two
    arms (:meth:`bench_config`).
    """

    out: str = opt("demo", "Folder for data, shards, runs, pictures.")
    kind: str = opt("motion", "Benchmark scene set (see fda generate --kind).", choices=BENCH_KINDS)
    train_videos: int = opt(192, "Training clips to generate (even: twins).")
    test_videos: int = opt(64, "Test clips to generate (even: twins).")
    scenes: Scenes = nested(Scenes())
    budget: Budget = nested(dataclasses.replace(SCENE_BUDGET, steps=200, seeds="0,1"),
                            exclude=("train.epochs",))  # runs are --steps long
    visualize: int = opt(8, "Test videos to draw with their masks at the end (0: none).")

    def __post_init__(self) -> None:
        _choice("kind", self.kind, BENCH_KINDS)
        budget = self.budget
        _require(isinstance(budget.steps, int) and budget.steps >= 2, "steps", budget.steps, "an integer >= 2")
        _require(budget.train.batch_size >= 2, "batch_size", budget.train.batch_size, "an integer >= 2")
        for name in ("lr", "alpha_lr"):
            value = getattr(budget.train, name)
            _require(value is None or 0 < value < 1, name, value, "in (0, 1) or auto")
        _twin_checks(self)
        _require(isinstance(self.visualize, int) and self.visualize >= 0, "visualize", self.visualize,
                 ">= 0 test videos to draw (0: no pictures)")

    def bench_config(self) -> BenchMotionConfig:
        """The demo as a two-arm motion benchmark (masks vs no-alpha) on one scene kind."""
        return BenchMotionConfig(out=self.out, sets=self.kind, arms="masks,no-alpha", train_videos=self.train_videos,
                                 test_videos=self.test_videos, scenes=self.scenes, budget=self.budget)
