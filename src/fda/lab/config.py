"""Application configurations: the configs and vocabulary of ``fda generate``, the viewers and the experiments.

They build on the core configs of :mod:`fda.config` (a sweep holds a :class:`fda.config.PreprocessConfig`, a
:class:`Budget` holds a :class:`fda.config.TrainConfig`); the core never imports this module (like open_clip's
training params, which live in ``open_clip_train``).
"""

import dataclasses
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, Optional, Tuple

from fda.config import MASK_RULES, MAX_FRAMES, SPLITS, MaskConfig, PreprocessConfig, TrainConfig, parse_splits
from fda.errors import ConfigError
from fda.options import (choice, choices_help, fields_with, name_list, nested, opt, parse_floats, parse_seeds, positive,
                         require)

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
        choice(self, "kind", self.kind, GENERATE_KINDS)
        choice(self, "condition", self.condition, SCENE_CONDITIONS)
        require(self.kind != "demo" or self.condition == "still", self, "condition", self.condition,
                "still for --kind demo (conditions apply to the benchmark scenes)")
        for name in ("train", "test"):
            value = getattr(self, name)
            require(isinstance(value, int) and 1 <= value <= 100_000, self, name, value, "an integer in 1..100000")
        require(isinstance(self.seed, int) and self.seed >= 0, self, "seed", self.seed, "an integer >= 0")
        parse_size(self.size or "64x64")
        fps = self.frame_rate
        require(isinstance(fps, int) and 1 <= fps <= 120, self, "fps", fps, "an integer in 1..120")
        require(isinstance(self.seconds, (int, float)) and 0 < self.seconds <= 600, self, "seconds", self.seconds,
                "in (0, 600]")
        require(round(fps * self.seconds) >= 2, self, "seconds", self.seconds,
                f"long enough for 2 frames at --fps {fps}")

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


# --- visualize, masks-stats ---------------------------------------------------------------------------------------
ANIMATIONS = ("gif", "mp4", "none")


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
        choice(self, "split", self.split, SPLITS)
        require(isinstance(self.n, int) and self.n >= 1, self, "n", self.n, "an integer >= 1 (videos to draw)")
        object.__setattr__(self, "video", tuple(self.video or ()))
        require(isinstance(self.tile, int) and 16 <= self.tile <= 1024, self, "tile", self.tile,
                "an integer in 16..1024")
        choice(self, "animation", self.animation, ANIMATIONS)
        require(isinstance(self.fps, (int, float)) and 0 < self.fps <= 60, self, "fps", self.fps, "in (0, 60]")


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
        require(str(self.out).lower().endswith(".png"), self, "out", self.out, "a .png file name")
        require(isinstance(self.bins, int) and 2 <= self.bins <= 200, self, "bins", self.bins, "an integer in 2..200")

    @property
    def splits(self) -> Optional[Tuple[str, ...]]:
        """Selected splits, or ``None`` for every split."""
        return parse_splits(self.split)


# --- the experiments: sweep, ablate, bench-motion, bench-masks, demo ------------------------------------------------
RUN_FIELDS = fields_with(TrainConfig, role="run")
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
        require(self.steps is None or (isinstance(self.steps, int) and self.steps >= 1), self, "steps", self.steps,
                "an integer >= 1 (or leave it out to train --epochs)")
        positive(self, "eval_batch_size")

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
    """Generated benchmark clips and their preprocessing (``fda bench-motion``, ``bench-masks``, ``demo``).

    ``--tau`` and ``--workers`` are preprocess's own options (their checks too), held in ``mask`` and ``preprocess``;
    the rest of those two configs keeps preprocess's defaults.
    """

    size: int = opt(64, "Square frame size of the clips and the shards.")
    fps: int = opt(2, "Frame rate of the clips.")
    seconds: float = opt(3.0, "Clip length.")
    frames: int = opt(4, "Frames sampled per clip (train and test).")
    mask: MaskConfig = nested(MaskConfig(), only=("tau",), help={"tau": "Mask threshold."}, flat=True)
    data_seed: int = opt(0, "Seed of the generated clips (training seeds: --seeds).")
    preprocess: PreprocessConfig = nested(PreprocessConfig(""), only=("workers",), flat=True,
                                          help={"workers": "Preprocess processes (0: all cores)."})

    def __post_init__(self) -> None:
        require(isinstance(self.data_seed, int) and self.data_seed >= 0, self, "data_seed", self.data_seed,
                "an integer >= 0")
        require(isinstance(self.size, int) and 16 <= self.size <= 1024 and self.size % 2 == 0, self, "size", self.size,
                "an even integer in 16..1024")
        require(isinstance(self.fps, int) and 1 <= self.fps <= 60, self, "fps", self.fps, "an integer in 1..60")
        require(isinstance(self.seconds, (int, float)) and 0 < self.seconds <= 60 and self.fps * self.seconds >= 2,
                self, "seconds", self.seconds, f"in (0, 60] and long enough for 2 frames at --fps {self.fps}")
        require(isinstance(self.frames, int) and 2 <= self.frames <= MAX_FRAMES, self, "frames", self.frames,
                f"an integer in 2..{MAX_FRAMES}")

    def preprocess_config(self, dataset_root: str, out: str, mask: Mapping[str, Any] = MappingProxyType({}),
                          **more: Any) -> PreprocessConfig:
        """The :class:`PreprocessConfig` of a generated set: these frames, size, tau and workers for every split;
        ``mask`` changes more mask options (``{"camera_motion": "compensate"}``), ``more`` other options."""
        return dataclasses.replace(self.preprocess, dataset_root=dataset_root, out=out, size=self.size,
                                   frames_train=self.frames, frames_test=self.frames,
                                   mask=dataclasses.replace(self.mask, **mask), **more)


@dataclass(frozen=True)
class SweepConfig:
    """``fda sweep``: preprocess once per tau (one decode), train each with the same budget and seeds, evaluate.

    ``preprocess`` holds every preprocess option but ``--out`` and ``--tau`` (each tau's shard set goes under
    ``out``). The no-mask baseline (``--no-alpha``, same budget) is trained once: the frames are the same for every
    tau.
    """

    preprocess: PreprocessConfig = nested(exclude=("out", "mask.tau"))
    tau: str = opt("0,12.5,25,50,100", "Comma list of thresholds (grey levels).")
    out: str = opt("sweep", "Folder for shards, runs, table, figure.")
    budget: Budget = nested(Budget())
    baseline: bool = opt(True, "Also train the no-mask baseline (--no-alpha) with the same budget.")

    def __post_init__(self) -> None:
        for tau in self.taus:
            require(0 <= tau <= 255, self, "tau", self.tau, "a comma list of thresholds in 0..255 (grey levels)")

    @property
    def taus(self) -> Tuple[float, ...]:
        """The thresholds, in the order given."""
        return parse_floats(self.tau, "--tau")

    def preprocess_config(self, tau: float, out: str) -> PreprocessConfig:
        """The :class:`PreprocessConfig` of one tau's shard set."""
        return dataclasses.replace(self.preprocess.with_mask(tau=tau), out=out)


@dataclass(frozen=True)
class AblateConfig:
    """``fda ablate``: the same budget with masks and without (``--no-alpha``), evaluated on the same split."""

    shards_dir: str = opt(help="A shard set written by fda preprocess.", argument=True, folder=True)
    out: str = opt("ablate", "Folder for runs, table, figure.")
    split: str = opt("train", "Training split.", choices=SPLITS)
    eval_split: str = opt("test", "Split both arms are evaluated on.", choices=SPLITS)
    budget: Budget = nested(Budget())

    def __post_init__(self) -> None:
        choice(self, "split", self.split, SPLITS)
        choice(self, "eval_split", self.eval_split, SPLITS)


BENCH_ARM_HELP: Mapping[str, str] = MappingProxyType({  # every --arms choice -> its words in the --arms help
    "masks": "",
    "no-alpha": "the reference, required",
    "full": "all-ones masks",
    "shuffled": "another clip's masks",
    "compensated": "masks made with --camera-motion compensate",
    "truth": "the movers' true boxes from the scenes' ground truth: what a rule could at best mark",
    **{rule: "masks made with that --mask-rule and --camera-motion compensate" for rule in MASK_RULES[1:]},
})
"""The ``fda bench-motion --arms`` choices in order, with their help (the keys of :data:`fda.lab.motion_bench.ARMS`; a
test checks they agree): adding an arm is one entry here and one ``Arm`` there. One arm per mask rule but ``diff``
(that one is ``masks``)."""
BENCH_ARMS = tuple(BENCH_ARM_HELP)
MASK_SETTINGS = ("plain", "compensated", "normalised", "both")


def _twin_checks(cfg: Any) -> None:
    """Clip counts of a benchmark set (``fda bench-motion``, ``fda demo``): twins, and a batch never twice a clip."""
    for name in ("train_videos", "test_videos"):
        value = getattr(cfg, name)
        require(isinstance(value, int) and value >= 4 and value % 2 == 0, cfg, name, value,
                "an even integer >= 4 (clips come in twins)")
    batch = cfg.budget.train.batch_size
    require(batch <= cfg.train_videos, cfg.budget.train, "batch_size", batch,
            f"<= --train-videos ({cfg.train_videos}): a batch never holds a video twice")


@dataclass(frozen=True)
class BenchMotionConfig:
    """``fda bench-motion``: the masks ablation on the benchmark scenes, with controls, over several seeds.

    Every set is generated (``fda generate --kind``), preprocessed once, and trained per arm and seed with the same
    budget; arms ``full``, ``shuffled`` and ``truth`` train on copies of the shards whose masks are all ones, another
    clip's or the movers' true boxes.
    """

    out: str = opt("bench-motion", "Folder for data, shards, runs, results.")
    sets: str = opt("motion,null,appearance", "Comma list of scene kinds (see fda generate --kind).")
    arms: str = opt("masks,no-alpha,full,shuffled", choices_help("Comma list of arms", BENCH_ARM_HELP))
    condition: str = opt("still", "Scene condition of every set (see fda generate --condition), e.g. pan for a moving "
                         "camera.", choices=SCENE_CONDITIONS)
    train_videos: int = opt(192, "Training clips per set (even: twins).")
    test_videos: int = opt(64, "Test clips per set (even: twins).")
    scenes: Scenes = nested(Scenes())
    budget: Budget = nested(SCENE_BUDGET, exclude=("train.epochs",))  # runs are --steps long

    set_list = name_list("sets", BENCH_KINDS)
    arm_list = name_list("arms", BENCH_ARMS)

    def __post_init__(self) -> None:
        choice(self, "condition", self.condition, SCENE_CONDITIONS)
        self.set_list  # parsing checks --sets
        arms = self.arm_list
        require(len(arms) >= 2 and "no-alpha" in arms, self, "arms", self.arms,
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

    condition_list = name_list("conditions", SCENE_CONDITIONS)
    setting_list = name_list("settings", MASK_SETTINGS)
    rule_list = name_list("rules", MASK_RULES)

    def __post_init__(self) -> None:
        self.condition_list, self.setting_list, self.rule_list  # parsing checks them
        require(isinstance(self.videos, int) and self.videos >= 2 and self.videos % 2 == 0, self, "videos", self.videos,
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
        choice(self, "kind", self.kind, BENCH_KINDS)
        budget = self.budget
        require(isinstance(budget.steps, int) and budget.steps >= 2, budget, "steps", budget.steps, "an integer >= 2")
        require(budget.train.batch_size >= 2, budget.train, "batch_size", budget.train.batch_size, "an integer >= 2")
        for name in ("lr", "alpha_lr"):
            value = getattr(budget.train, name)
            require(value is None or 0 < value < 1, budget.train, name, value, "in (0, 1) or auto")
        _twin_checks(self)
        require(isinstance(self.visualize, int) and self.visualize >= 0, self, "visualize", self.visualize,
                ">= 0 test videos to draw (0: no pictures)")

    def bench_config(self) -> BenchMotionConfig:
        """The demo as a two-arm motion benchmark (masks vs no-alpha) on one scene kind."""
        return BenchMotionConfig(out=self.out, sets=self.kind, arms="masks,no-alpha", train_videos=self.train_videos,
                                 test_videos=self.test_videos, scenes=self.scenes, budget=self.budget)
