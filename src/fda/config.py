"""Core stage configurations: the frozen, validated configs of preprocess (and its masks), train, eval, embed, search.

Each field is declared once with :func:`fda.options.opt` (help, choices, spelling), so ``fda.cli`` builds the
commands' options from these classes. The application layer's configs (experiments, generators, viewers) live in
:mod:`fda.lab.config`.
"""

import dataclasses
import os
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from fda.errors import ConfigError
from fda.options import choice, choices_help, fields_with, flat_fields, leaf_fields, nested, opt, positive, require

LAYOUTS = ("msrvtt", "msvd", "activitynet", "didemo", "lsmdc", "folder")
MSRVTT_TRAIN_LISTS = ("9k", "7k")
SPLITS = ("train", "val", "test")
DECODERS = ("pyav",)
ENGINES = ("local", "ray")
EMPTY_MASKS = ("full", "zero")
DIFF_MODES = ("adjacent", "sampled")
CAMERA_MOTIONS = ("none", "compensate")
MASK_RULE_HELP: Mapping[str, str] = MappingProxyType({  # every --mask-rule choice -> its words in the help
    "diff": "the paper's frame difference",
    "flow": "dense optical flow, DIS",
    "mv": "the codec's motion vectors, read in the same decode; frames without them use diff",
})
"""The ``--mask-rule`` choices in order, with their help (the keys of :data:`fda.pipeline.mask_rules.MASK_RULES`; a
test checks they agree): adding a rule is one entry there and one here."""
MASK_RULES = tuple(MASK_RULE_HELP)
FLOW_THRESHOLD = 1.0  # px; fda bench-masks chose it (docs/MASKS.md)
DEVICES = ("auto", "cpu", "cuda", "mps")
MAX_FRAMES = 99  # member names carry two digits: f00 ... f98


def check_device_name(cfg: Any) -> None:
    """``cfg.device`` is auto, cpu, cuda, cuda:N or mps."""
    value = cfg.device
    require(isinstance(value, str) and value.split(":")[0] in DEVICES, cfg, "device", value,
            "auto, cpu, cuda, cuda:N or mps")


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
class MaskConfig:
    """How ``fda preprocess`` makes the alpha masks: every mask option, declared once.

    The object the workers (:func:`fda.pipeline.mask_rules.compute_masks`), the sample json and the manifest
    (:func:`fda.shards.schema.mask_json`) and the viewers read. ``diff_mode`` chooses the partner frames, so it shapes
    the decode as well as the masks. ``flow_threshold`` is read by the flow and mv rules only: under ``diff`` it is
    the default, so one diff setting is one config (and one record). ``mask_rule`` names an entry of the rule table
    a run uses (:data:`fda.pipeline.mask_rules.MASK_RULES`, or a copy with more rules), so it is checked against that
    table when a run starts (:func:`fda.pipeline.mask_rules.rule_of`), not here: the CLI offers the shipped rules
    (:data:`MASK_RULES`). Every ``role="sample-unless-diff"`` field is recorded for every rule but ``diff``.
    """

    tau: float = opt(25.0, "Frame-difference threshold in grey levels.", role="sample")
    kernel: int = opt(3, "Morphology kernel (closing then opening); 0 disables.", role="sample")
    min_area: int = opt(16, "Drop moving regions smaller than this many pixels.", role="sample")
    empty_mask: str = opt("full", "Mask for a frame with no motion left.", choices=EMPTY_MASKS, role="sample")
    diff_mode: str = opt("adjacent", "Difference with the adjacent decoded frame or the adjacent sampled one.",
                         choices=DIFF_MODES, role="sample")
    camera_motion: str = opt("none", "none: the paper's plain difference; compensate: fit the camera's motion between "
                             "frame and partner (tracked corners, RANSAC similarity), warp, and difference only where "
                             "both see the scene (an implausible fit falls back to the plain rule and is recorded).",
                             choices=CAMERA_MOTIONS, role="sample")
    normalize_brightness: bool = opt(False, "Match the partner's brightness to the frame's before differencing "
                                     "(flicker, exposure changes).", role="sample")
    mask_rule: str = opt("diff", choices_help("The dynamic-region estimate", MASK_RULE_HELP) + " See docs/MASKS.md.",
                         choices=MASK_RULES, role="sample-unless-diff")
    flow_threshold: float = opt(FLOW_THRESHOLD, "--mask-rule flow and mv: a pixel (block) moves when its motion, less "
                                "the camera's with --camera-motion compensate, exceeds this many stored pixels.",
                                role="sample-unless-diff")

    def __post_init__(self) -> None:
        require(isinstance(self.tau, (int, float)) and 0 <= self.tau <= 255, self, "tau", self.tau,
                "in 0..255 (grey levels)")
        object.__setattr__(self, "tau", float(self.tau))
        require(isinstance(self.kernel, int) and self.kernel >= 0 and (self.kernel == 0 or self.kernel % 2 == 1), self,
                "kernel", self.kernel, "0 (no morphology) or an odd integer >= 1")
        require(isinstance(self.min_area, int) and self.min_area >= 0, self, "min_area", self.min_area, ">= 0 pixels")
        choice(self, "empty_mask", self.empty_mask, EMPTY_MASKS)
        choice(self, "diff_mode", self.diff_mode, DIFF_MODES)
        choice(self, "camera_motion", self.camera_motion, CAMERA_MOTIONS)
        require(isinstance(self.flow_threshold, (int, float)) and 0 < self.flow_threshold <= 100, self,
                "flow_threshold", self.flow_threshold, "in (0, 100] pixels")
        object.__setattr__(self, "flow_threshold", float(self.flow_threshold))
        if self.mask_rule == "diff":  # it reads no rule parameter: one diff setting, one config (and one record)
            for name in fields_with(type(self), role="sample-unless-diff"):
                if name != "mask_rule":
                    object.__setattr__(self, name, self.__dataclass_fields__[name].default)

    @property
    def robust(self) -> bool:
        """Whether a robustness option is on (the masks then come from :func:`fda.pipeline.masks.robust_clip_masks`)."""
        return self.camera_motion != "none" or self.normalize_brightness


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything ``fda preprocess`` needs; the fields that shape the data are recorded in every shard set."""

    dataset_root: str = opt(help="The dataset's folder.", argument=True, folder=True)
    out: str = opt("shards", "Folder for shards and manifest.")
    layout: Optional[str] = opt(None, "Dataset layout (default: detected).", choices=LAYOUTS, role="sample")
    msrvtt_train: str = opt("9k", "MSR-VTT training list.", choices=MSRVTT_TRAIN_LISTS, role="sample")
    captions: Optional[str] = opt(None, "Captions file (CSV, TSV or JSONL) for a folder of videos.", role="sample")
    split: Optional[str] = opt(None, "Comma list of splits to write (default: all).", role="shard-set")
    frames_train: int = opt(6, "Frames sampled per training clip.", role="sample")
    frames_test: int = opt(12, "Frames sampled per val/test clip.", role="sample")
    size: int = opt(224, "Short-side resize then center crop, in pixels.", role="sample")
    mask: MaskConfig = nested(MaskConfig(), flat=True)  # --tau ... --flow-threshold, recorded flat
    jpeg_quality: int = opt(90, "JPEG quality of stored frames.", role="sample")
    samples_per_shard: int = opt(200, "Videos per tar shard.", role="shard-set")
    decoder: str = opt("pyav", "Video decoder (in-process FFmpeg through PyAV).", choices=DECODERS, role="sample")
    min_decodable: float = opt(0.95, "A clip whose decodable frames are fewer than this fraction of its frames is a "
                               "recorded failure.", role="sample")
    skip_damaged_frames: bool = opt(False, "Sample a damaged clip only from frames that decoded cleanly from clean "
                                    "references (default: any decoded frame; tainted ones are marked in the json).",
                                    role="sample-when-on")
    video_timeout: float = opt(600.0, "Seconds one video may take to decode before its worker is replaced and the "
                               "video recorded as timed out (0: no limit).")
    workers: int = opt(0, "Worker processes (0: all cores).")
    engine: str = opt("local", "Run shard tasks in a local process pool or on Ray.", choices=ENGINES)
    ray_address: Optional[str] = opt(None, "Ray cluster address (with --engine ray; default: local Ray).")
    max_failure_rate: float = opt(0.01, "Exit non-zero when more videos than this fraction fail.")
    limit: Optional[int] = opt(None, "Take only the first N videos of each split.", role="sample")
    overwrite: bool = opt(False, "Delete earlier output in --out and start over.")
    retry_failed: bool = opt(False, "Also redo finished shards that recorded failed videos (changed inputs are redone "
                             "anyway).")
    full_duration: bool = opt(False, "didemo: sample the whole clip (default: only frames presented before 30 s, the "
                              "annotated part).", role="sample-when-on")

    def __post_init__(self) -> None:
        if self.layout is not None:
            choice(self, "layout", self.layout, LAYOUTS)
        choice(self, "msrvtt_train", self.msrvtt_train, MSRVTT_TRAIN_LISTS)
        parse_splits(self.split)
        for name in ("frames_train", "frames_test"):
            value = getattr(self, name)
            require(isinstance(value, int) and 1 <= value <= MAX_FRAMES, self, name, value,
                    f"an integer in 1..{MAX_FRAMES}")
        require(isinstance(self.size, int) and 16 <= self.size <= 4096, self, "size", self.size,
                "an integer in 16..4096")
        # mask_rule: checked against the rule table of the run (fda.pipeline.mask_rules.rule_of), before any work
        require(1 <= self.jpeg_quality <= 100, self, "jpeg_quality", self.jpeg_quality, "in 1..100")
        require(self.samples_per_shard >= 1, self, "samples_per_shard", self.samples_per_shard, ">= 1")
        choice(self, "decoder", self.decoder, DECODERS)
        require(isinstance(self.min_decodable, (int, float)) and 0.0 <= self.min_decodable <= 1.0, self,
                "min_decodable", self.min_decodable, "in 0..1 (the fraction of a clip's frames that must decode)")
        require(isinstance(self.video_timeout, (int, float)) and self.video_timeout >= 0, self, "video_timeout",
                self.video_timeout, ">= 0 seconds (0: no limit)")
        require(self.workers >= 0, self, "workers", self.workers, ">= 0 (0: all cores)")
        choice(self, "engine", self.engine, ENGINES)
        require(0.0 <= self.max_failure_rate <= 1.0, self, "max_failure_rate", self.max_failure_rate, "in 0..1")
        require(self.limit is None or self.limit >= 1, self, "limit", self.limit, ">= 1")
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
        """The fields that decide the bytes of the shards (:data:`DATA_FIELDS`, and those of
        :data:`OPTIONAL_DATA_FIELDS` and :data:`RULE_DATA_FIELDS` that apply), by their roles in this config's
        declaration; a rerun must match them to resume."""
        cls, flat = type(self), flat_fields(self)  # the mask options by their own names, in place
        fields = {k: flat[k] for k in fields_with(cls, role=("sample", "shard-set"))}
        defaults = {f.name: f.default for f in leaf_fields(cls)}
        for name in fields_with(cls, role="sample-when-on"):  # only when on: other shard sets keep their fingerprints
            if flat[name] != defaults[name]:
                fields[name] = flat[name]  # its value (a flag's: True), so two settings never share a fingerprint
        if self.mask.mask_rule != "diff":  # likewise (issue 22): a diff shard set keeps its fingerprint
            fields.update({name: flat[name] for name in fields_with(cls, role="sample-unless-diff")})
        return fields

    def with_mask(self, **changes: Any) -> "PreprocessConfig":
        """This config with ``changes`` to its mask options (``cfg.with_mask(camera_motion="compensate")``)."""
        return dataclasses.replace(self, mask=dataclasses.replace(self.mask, **changes))


DATA_FIELDS = fields_with(PreprocessConfig, role=("sample", "shard-set"))
"""The :class:`PreprocessConfig` fields (its :class:`MaskConfig`'s in place, by their own names) that decide the bytes
of a shard set (``role="sample"`` or ``"shard-set"``), plus those of :data:`OPTIONAL_DATA_FIELDS` that are on."""
OPTIONAL_DATA_FIELDS = fields_with(PreprocessConfig, role="sample-when-on")
"""Options that decide the bytes of a shard set when on (not at their default), recorded only then and by their value
(shard sets written before they existed keep their fingerprints)."""
RULE_DATA_FIELDS = fields_with(PreprocessConfig, role="sample-unless-diff")
"""The mask rule and its parameters: they decide the bytes of a shard set whose rule is not ``diff``, recorded only
then (a ``diff`` shard set keeps the fingerprint it always had)."""
SAMPLE_FIELDS = fields_with(PreprocessConfig, role="sample") + OPTIONAL_DATA_FIELDS + RULE_DATA_FIELDS
"""The fields that decide what a sample holds (not which splits were written or how they are cut into shards): a
model trained on a shard set has learned from them."""


CAPTION_MODES = ("all", "random")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
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

    shards_dir: str = opt(help="A shard set written by fda preprocess.", argument=True, folder=True,
                          role="run", resume="fixed")
    out: Optional[str] = opt(None, "Run folder (default: a new folder under ./runs/); rerunning into one that has "
                             "checkpoints resumes it.", role="run", resume="ignored")
    split: str = opt("train", "Split to train on.", choices=SPLITS, role="run", resume="fixed")
    val_split: str = opt("auto", "Split for periodic validation. auto: val, which keeps best.pt by its R@1; without "
                         "val, test for the curve only, no best.pt (fda eval reads the last checkpoint). test: keep "
                         "best.pt by test R@1, as papers that select on test do (fda eval on test says so).",
                         choices=VAL_SPLITS, role="run")
    val_from_train: int = opt(0, "Hold out N training videos (the same N for the same set: chosen by a hash of their "
                              "keys; they do not train) to validate on and keep best.pt by: a proper best.pt for a set "
                              "without a val split. 0: off.", role="run", resume="fixed")
    model: str = opt("ViT-B-32", "Architecture: ViT-B-32, ViT-B-16, ViT-L-14, fda-small, fda-tiny, or a config .json.",
                     resume="fixed")
    pretrained: Optional[str] = opt("openai", "CLIP weights: an open_clip tag (downloaded), a local FILE, or 'none' "
                                    "for random init.", resume="fixed")
    alpha_checkpoint: Optional[str] = opt(None, "Alpha-CLIP release checkpoint of the vision tower.",
                                          role="run", resume="fixed")
    no_alpha: bool = opt(False, "Train the plain CLIP meanP baseline (no alpha path).", role="run", resume="fixed")
    captions: str = opt("all", "all: every (video, caption) pair per epoch; random: one caption per visit.",
                        choices=CAPTION_MODES, role="run", resume="fixed")
    batch_size: int = opt(128, "Pairs per process per micro-step.", resume="fixed")
    accum_steps: int = opt(1, "Micro-steps per optimiser step (gradient accumulation).", resume="fixed")
    workers: int = opt(4, "DataLoader worker processes per training process (0: load in the main process; unlike "
                       "preprocess --workers, 0 is not 'all cores').", flag="--loader-workers", aliases=("--workers",))
    shuffle_buffer: int = opt(500, "Videos in each stream's shuffle buffer.", role="run", resume="fixed")
    epochs: int = opt(5, "Run length in epochs (from the manifest's counts).")
    max_steps: Optional[int] = opt(None, "Run length in optimiser steps (overrides --epochs).", role="run")
    lr: Optional[float] = opt(None, "Learning rate of CLIP weights. auto: 1e-6 (CLIP4Clip's) from pretrained weights, "
                              "1e-3 (the demo's) from random weights; train_config.json records the rate used.",
                              auto=True)
    alpha_lr: float = opt(1e-4, "Learning rate of the alpha conv.")
    weight_decay: float = opt(0.2, "AdamW weight decay (not on gains, biases, embeddings, logit scale).")
    warmup_steps: Optional[int] = opt(None, "Linear warmup steps (default: 10% of the run).")
    grad_clip: float = opt(1.0, "Clip the gradient norm to this (0: off).")
    label_smoothing: float = opt(0.0, "Label smoothing of the contrastive loss (Alpha-CLIP used 0.1).")
    freeze_text: bool = opt(False, "Keep the text tower fixed.", resume="fixed")
    augment: str = opt("none", "crop-flip: one random resized crop + flip per clip, frames and masks alike.",
                       choices=AUGMENTS, resume="fixed")
    precision: str = opt("auto", "auto: bf16 autocast on CUDA, fp32 elsewhere.", choices=PRECISIONS)
    grad_checkpointing: bool = opt(False, "Recompute activations to save memory.")
    device: str = opt("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")
    seed: int = opt(0, "Seed of data order and draws.", role="run", resume="fixed")
    save_every: int = opt(1000, "Checkpoint every N steps (and at the end).", role="run")
    keep_last: int = opt(3, "Step checkpoints to keep (best.pt is kept apart).", role="run")
    log_every: int = opt(10, "Console line every N steps (metrics.jsonl gets every step).", role="run")
    val_every: int = opt(0, "Validate every N steps (0: at each epoch end).", role="run")
    tensorboard: bool = opt(True, "Write TensorBoard events to RUN_DIR/tb.", role="run")
    resume: Optional[str] = opt(None, "Checkpoint file or run folder to resume (default: --out's own).",
                                role="run", resume="ignored")

    def __post_init__(self) -> None:
        choice(self, "split", self.split, SPLITS)
        choice(self, "val_split", self.val_split, VAL_SPLITS)
        choice(self, "captions", self.captions, CAPTION_MODES)
        choice(self, "augment", self.augment, AUGMENTS)
        choice(self, "precision", self.precision, PRECISIONS)
        check_device_name(self)
        positive(self, "batch_size", "accum_steps", "epochs", "log_every", "keep_last", "save_every")
        require(isinstance(self.workers, int) and self.workers >= 0, self, "workers", self.workers,
                ">= 0 (0: load in the main process)")
        require(self.shuffle_buffer >= 1, self, "shuffle_buffer", self.shuffle_buffer, ">= 1 video (1: no shuffle)")
        require(self.max_steps is None or self.max_steps >= 1, self, "max_steps", self.max_steps, ">= 1")
        require(self.warmup_steps is None or self.warmup_steps >= 0, self, "warmup_steps", self.warmup_steps, ">= 0")
        for name in ("lr", "alpha_lr", "weight_decay", "grad_clip"):
            value = getattr(self, name)
            if value is None and name == "lr":
                continue  # auto
            require(value >= 0 and value == value and value != float("inf"), self, name, value, "a finite number >= 0")
        require(0.0 <= self.label_smoothing < 1.0, self, "label_smoothing", self.label_smoothing, "in [0, 1)")
        require(self.val_every >= 0, self, "val_every", self.val_every, ">= 0 (0: at each epoch end)")
        require(isinstance(self.val_from_train, int) and self.val_from_train >= 0, self, "val_from_train",
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


READER: Dict[str, Callable[[], Any]] = {
    "shards": lambda: opt(None, SHARDS_HELP),
    "batch_size": lambda: opt(32, "Clips per forward pass."),
    "text_batch_size": lambda: opt(256, "Captions per forward pass."),
    "workers": lambda: opt(2, "Image decoding threads (0: decode in the main thread).", flag="--decode-threads",
                           aliases=("--workers",)),
    "device": lambda: opt("auto", "auto, cpu, cuda, cuda:N or mps."),
    "seed": lambda: opt(0, "Initialisation seed of a model without weights."),
}
"""The options ``fda eval`` and ``fda embed`` share beside their :class:`ModelSource` (how they read shards and run
the model), declared once: each config takes a fresh field from here (a dataclass field belongs to one class)."""


def check_reader(cfg: Any) -> None:
    """The checks of the :data:`READER` options (``fda eval``, ``fda embed``), written once."""
    positive(cfg, "batch_size", "text_batch_size")
    require(isinstance(cfg.workers, int) and cfg.workers >= 0, cfg, "workers", cfg.workers,
            ">= 0 decoding threads (0: decode in the main thread)")
    check_device_name(cfg)


@dataclass(frozen=True)
class ModelSource:
    """Which model a command reads (``fda eval``, ``fda embed``; :func:`fda.model.create` builds it): a trained run
    or checkpoint, or a model that was never trained here (``model``/``pretrained``, with ``alpha_checkpoint``)."""

    run: Optional[str] = opt(None, "Run folder: evaluate its best.pt (kept only when a val split chose it), else its "
                             "last checkpoint (default: newest run).")
    checkpoint: Optional[str] = opt(None, "An fda checkpoint file.")
    model: Optional[str] = opt(None, "Evaluate an untrained model (zero-shot), e.g. ViT-B-32 or fda-tiny.")
    pretrained: Optional[str] = opt(None, PRETRAINED_HELP)
    alpha_checkpoint: Optional[str] = opt(None, ALPHA_HELP)
    runs_dir: str = opt("runs", "Where runs are looked for.")

    def __post_init__(self) -> None:
        trained = bool(self.run or self.checkpoint)
        if trained and (self.model or self.pretrained):
            raise ConfigError("--model/--pretrained evaluate an untrained model; --run/--checkpoint a trained one: "
                              "pass only one kind")
        if self.alpha_checkpoint and not (self.model or self.pretrained):
            raise ConfigError("--alpha-checkpoint goes with --model/--pretrained (a checkpoint records its own "
                              "weights)")


@dataclass(frozen=True)
class EvalConfig:
    """``fda eval``: retrieval metrics of a trained run, a checkpoint, or a never-trained model on one split."""

    split: str = opt("test", "Split to evaluate.", choices=SPLITS)
    shards: Optional[str] = READER["shards"]()  # None: the shard set the run trained on, else ./shards
    source: ModelSource = nested(ModelSource())
    frames: Optional[int] = opt(None, "Frames per clip the shards must hold (default: what the shards' manifest "
                                "says).")  # None: whatever the shards hold
    batch_size: int = READER["batch_size"]()
    text_batch_size: int = READER["text_batch_size"]()
    workers: int = READER["workers"]()
    device: str = READER["device"]()
    dsl: bool = opt(False, "Add dual-softmax (DSL) numbers in separate columns.")
    baseline: bool = opt(False, "Also evaluate without the alpha channel (plain CLIP meanP), side by side.")
    out: Optional[str] = opt(None, "Report folder (default: the run folder).")
    cache: bool = opt(True, "Reuse features cached for the same model and shards.")
    seed: int = READER["seed"]()

    def __post_init__(self) -> None:
        choice(self, "split", self.split, SPLITS)
        require(self.frames is None or (isinstance(self.frames, int) and 1 <= self.frames <= MAX_FRAMES), self,
                "frames", self.frames, f"an integer in 1..{MAX_FRAMES}")
        check_reader(self)


@dataclass(frozen=True)
class EmbedConfig:
    """``fda embed``: video and caption embeddings of a shard set, written in chunks for ``fda search``."""

    out: str = opt(help="Folder for the embeddings (EMB_DIR).")
    shards: Optional[str] = READER["shards"]()  # None: the shard set the run trained on, else ./shards
    split: Optional[str] = opt(None, "Comma list of splits (default: all).")
    source: ModelSource = nested(ModelSource(), help={
        "run": "Run folder: use its best.pt (kept only when a val split chose it), else its last checkpoint.",
        "model": "An untrained model name (ViT-B-32, fda-tiny, ...)."})
    batch_size: int = READER["batch_size"]()
    text_batch_size: int = READER["text_batch_size"]()
    chunk_size: int = opt(65536, "Rows per .npy file.")
    captions: bool = opt(True, "Also embed the captions.")
    index: str = opt("none", "Also build a faiss HNSW index of the videos (optional extra fda[faiss]; for > 1M "
                     "videos).", choices=INDEX_KINDS)
    workers: int = READER["workers"]()
    device: str = READER["device"]()
    seed: int = READER["seed"]()
    overwrite: bool = opt(False, "Replace earlier embeddings in --out.")

    def __post_init__(self) -> None:
        parse_splits(self.split)
        positive(self, "chunk_size")
        choice(self, "index", self.index, INDEX_KINDS)
        check_reader(self)

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
        require(isinstance(self.k, int) and self.k >= 1, self, "k", self.k, "an integer >= 1")
        choice(self, "target", self.target, SEARCH_TARGETS)
        check_device_name(self)
