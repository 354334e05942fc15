"""The ``fda`` command line: options -> stage configs, FdaError -> exit codes, logging set up once.

Stage modules are imported inside each command so that ``fda --help`` stays fast.
"""

import logging
import re
from typing import Any, Callable, List, Optional

import click

from fda import __version__
from fda.config import (BENCH_KINDS, CAMERA_MOTIONS, DECODERS, GENERATE_KINDS, LAYOUTS, SCENE_CONDITIONS,
                        GenerateConfig, PreprocessConfig, TrainConfig, field_default)
from fda.errors import FdaError, path_error
from fda.logs import setup_logging


class FdaClickError(click.ClickException):
    """A library error shown as ``Error: <message>`` with the error's own exit code."""

    def __init__(self, error: FdaError) -> None:
        super().__init__(str(error))
        self.exit_code = error.exit_code


def run_stage(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a library entry point, turning :class:`FdaError` into a one-line Click error."""
    try:
        return fn(*args, **kwargs)
    except FdaError as err:
        raise FdaClickError(err) from None


def build_config(cls: type, **kwargs: Any) -> Any:
    """Build a stage config from Click's keyword arguments (names match the fields 1:1)."""
    return run_stage(cls, **kwargs)


def _default(cls: type, name: str) -> Any:
    return field_default(cls, name)


class FdaGroup(click.Group):
    """The ``fda`` group; its ``-v``/``--verbose`` is accepted after the subcommand too (``fda train ... -v``)."""

    def parse_args(self, ctx: click.Context, args: List[str]) -> List[str]:
        """Move every ``-v``, ``-vv``, ``--verbose`` before ``--`` to the front, where the group parses it."""
        cut = args.index("--") if "--" in args else len(args)
        head, tail = args[:cut], args[cut:]
        verbose = [a for a in head if _VERBOSE.fullmatch(a)]
        return super().parse_args(ctx, verbose + [a for a in head if not _VERBOSE.fullmatch(a)] + tail)


_VERBOSE = re.compile(r"-v+|--verbose")


@click.group(cls=FdaGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, "--version", prog_name="fda")
@click.option("-v", "--verbose", count=True, help="More log output (-v: debug).")
@click.option("--log-file", type=click.Path(dir_okay=False), default=None, help="Also write the full log here.")
def cli(verbose: int, log_file: Optional[str]) -> None:
    """FDA-CLIP: frame-difference alpha masks for Alpha-CLIP text-video retrieval."""
    try:
        setup_logging(logging.DEBUG if verbose else logging.INFO, log_file)
    except OSError as err:
        setup_logging(logging.DEBUG if verbose else logging.INFO)  # keep a console log for the rest of the run
        raise FdaClickError(path_error("--log-file", str(log_file), err, "name a file in a folder you can write "
                                       "to")) from None


P = PreprocessConfig


@cli.command()
@click.argument("dataset_root", type=click.Path(file_okay=False))
@click.option("--out", default=_default(P, "out"), show_default=True, help="Folder for shards and manifest.")
@click.option("--layout", type=click.Choice(LAYOUTS), default=None,
              help="Dataset layout (default: detected).")
@click.option("--msrvtt-train", type=click.Choice(["9k", "7k"]), default=_default(P, "msrvtt_train"),
              show_default=True, help="MSR-VTT training list.")
@click.option("--captions", default=None, help="Captions file (CSV or JSONL) for a folder of videos.")
@click.option("--split", default=None, help="Comma list of splits to write (default: all).")
@click.option("--frames-train", type=int, default=_default(P, "frames_train"), show_default=True,
              help="Frames sampled per training clip.")
@click.option("--frames-test", type=int, default=_default(P, "frames_test"), show_default=True,
              help="Frames sampled per val/test clip.")
@click.option("--size", type=int, default=_default(P, "size"), show_default=True,
              help="Short-side resize then center crop, in pixels.")
@click.option("--tau", type=float, default=_default(P, "tau"), show_default=True,
              help="Frame-difference threshold in grey levels.")
@click.option("--kernel", type=int, default=_default(P, "kernel"), show_default=True,
              help="Morphology kernel (closing then opening); 0 disables.")
@click.option("--min-area", type=int, default=_default(P, "min_area"), show_default=True,
              help="Drop moving regions smaller than this many pixels.")
@click.option("--empty-mask", type=click.Choice(["full", "zero"]), default=_default(P, "empty_mask"),
              show_default=True, help="Mask for a frame with no motion left.")
@click.option("--diff-mode", type=click.Choice(["adjacent", "sampled"]), default=_default(P, "diff_mode"),
              show_default=True, help="Difference with the adjacent decoded frame or the adjacent sampled one.")
@click.option("--camera-motion", type=click.Choice(CAMERA_MOTIONS), default=_default(P, "camera_motion"),
              show_default=True, help="none: the paper's plain difference; compensate: fit the camera's motion between "
              "frame and partner (tracked corners, RANSAC similarity), warp, and difference only where both see the "
              "scene (an implausible fit falls back to the plain rule and is recorded).")
@click.option("--normalize-brightness", is_flag=True, default=False,
              help="Match the partner's brightness to the frame's before differencing (flicker, exposure changes).")
@click.option("--jpeg-quality", type=int, default=_default(P, "jpeg_quality"), show_default=True,
              help="JPEG quality of stored frames.")
@click.option("--samples-per-shard", type=int, default=_default(P, "samples_per_shard"), show_default=True,
              help="Videos per tar shard.")
@click.option("--decoder", type=click.Choice(DECODERS), default=_default(P, "decoder"),
              show_default=True, help="Video decoder (in-process FFmpeg through PyAV).")
@click.option("--min-decodable", type=float, default=_default(P, "min_decodable"), show_default=True,
              help="A clip whose decodable frames are fewer than this fraction of its frames is a recorded failure.")
@click.option("--workers", type=int, default=_default(P, "workers"), show_default=True,
              help="Worker processes (0: all cores).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default=_default(P, "engine"), show_default=True,
              help="Run shard tasks in a local process pool or on Ray.")
@click.option("--ray-address", default=None, help="Ray cluster address (with --engine ray; default: local Ray).")
@click.option("--max-failure-rate", type=float, default=_default(P, "max_failure_rate"), show_default=True,
              help="Exit non-zero when more videos than this fraction fail.")
@click.option("--limit", type=int, default=None, help="Take only the first N videos of each split.")
@click.option("--overwrite", is_flag=True, default=False, help="Delete earlier output in --out and start over.")
@click.option("--retry-failed", is_flag=True, default=False,
              help="Also redo finished shards that recorded failed videos (changed inputs are redone anyway).")
@click.option("--full-duration", is_flag=True, default=False,
              help="didemo: sample the whole clip (default: only frames presented before 30 s, the annotated part).")
def preprocess(**kwargs: Any) -> None:
    """Decode videos once into WebDataset shards of frames plus frame-difference alpha masks."""
    from fda.pipeline.preprocess import run_preprocess

    cfg = build_config(PreprocessConfig, **kwargs)
    result = run_stage(run_preprocess, cfg)
    click.echo(result.summary())


G = GenerateConfig


@cli.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--kind", type=click.Choice(GENERATE_KINDS), default=_default(G, "kind"), show_default=True,
              help="demo: captions tell colour+shape+motion apart. Benchmark scenes (twins that differ in one thing): "
              "motion: which object moves, captioned by the mover; null: the captioned object's colour, the mover "
              "drawn independently; appearance: the captioned still object's colour, the same distractor moves.")
@click.option("--train", type=int, default=_default(G, "train"), show_default=True, help="Training videos.")
@click.option("--test", type=int, default=_default(G, "test"), show_default=True, help="Test videos (1k-A style).")
@click.option("--seed", type=int, default=_default(G, "seed"), show_default=True, help="Data-set seed.")
@click.option("--size", default=None, help="Frame size WIDTHxHEIGHT (even) [default: 160x120 for demo, 64x64 else].")
@click.option("--fps", type=int, default=None, help="Frame rate [default: 10 for demo, 2 else].")
@click.option("--seconds", type=float, default=_default(G, "seconds"), show_default=True, help="Clip length.")
@click.option("--condition", type=click.Choice(SCENE_CONDITIONS), default=_default(G, "condition"), show_default=True,
              help="Benchmark scenes only: still camera, or what real footage does: pan, zoom, shake (a textured "
              "background), flicker, noise, compression.")
def generate(**kwargs: Any) -> None:
    """Write a synthetic MSR-VTT-layout data set of encoded videos with known content and captions."""
    from fda.lab.scenes import run_generate
    from fda.lab.synthetic import summarize

    cfg = build_config(GenerateConfig, **kwargs)
    result = run_stage(run_generate, cfg)
    click.echo(summarize(result))


# --- fda train ---------------------------------------------------------------------------------------------------

T = TrainConfig


def _deprecated_loader_workers(ctx: click.Context, param: click.Parameter, value: Optional[int]) -> None:
    """``fda train --workers N``: the old spelling of ``--loader-workers N`` (preprocess's --workers 0 means all
    cores, train's 0 means no worker processes, hence the new name)."""
    if value is None:
        return
    logging.getLogger("fda.cli").warning("fda train --workers is deprecated: use --loader-workers %d (the same "
                                         "DataLoader workers; 0 loads in the main process)", value)
    ctx.meta["fda_train_workers"] = value


@cli.command()
@click.argument("shards_dir", type=click.Path(file_okay=False))
@click.option("--out", default=None, help="Run folder (default: a new folder under ./runs/); rerunning into one "
              "that has checkpoints resumes it.")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default=_default(T, "split"),
              show_default=True, help="Split to train on.")
@click.option("--val-split", type=click.Choice(["auto", "val", "test", "none"]), default=_default(T, "val_split"),
              show_default=True, help="Split for periodic validation (auto: val, else test, else none).")
@click.option("--model", default=_default(T, "model"), show_default=True,
              help="Architecture: ViT-B-32, ViT-B-16, ViT-L-14, fda-tiny, or a config .json.")
@click.option("--pretrained", default=_default(T, "pretrained"), show_default=True,
              help="CLIP weights: an open_clip tag (downloaded), a local FILE, or 'none' for random init.")
@click.option("--alpha-checkpoint", default=None, help="Alpha-CLIP release checkpoint of the vision tower.")
@click.option("--no-alpha", is_flag=True, default=False, help="Train the plain CLIP meanP baseline (no alpha path).")
@click.option("--captions", type=click.Choice(["all", "random"]), default=_default(T, "captions"),
              show_default=True, help="all: every (video, caption) pair per epoch; random: one caption per visit.")
@click.option("--batch-size", type=int, default=_default(T, "batch_size"), show_default=True,
              help="Pairs per process per micro-step.")
@click.option("--accum-steps", type=int, default=_default(T, "accum_steps"), show_default=True,
              help="Micro-steps per optimiser step (gradient accumulation).")
@click.option("--loader-workers", "workers", type=int, default=_default(T, "workers"), show_default=True,
              help="DataLoader worker processes per training process (0: load in the main process; unlike "
              "preprocess --workers, 0 is not 'all cores').")
@click.option("--workers", "deprecated_workers", type=int, default=None, expose_value=False, hidden=True,
              callback=_deprecated_loader_workers)
@click.option("--shuffle-buffer", type=int, default=_default(T, "shuffle_buffer"), show_default=True,
              help="Videos in each stream's shuffle buffer.")
@click.option("--epochs", type=int, default=_default(T, "epochs"), show_default=True,
              help="Run length in epochs (from the manifest's counts).")
@click.option("--max-steps", type=int, default=None, help="Run length in optimiser steps (overrides --epochs).")
@click.option("--lr", type=float, default=_default(T, "lr"), show_default=True, help="Learning rate of CLIP weights.")
@click.option("--alpha-lr", type=float, default=_default(T, "alpha_lr"), show_default=True,
              help="Learning rate of the alpha conv.")
@click.option("--weight-decay", type=float, default=_default(T, "weight_decay"), show_default=True,
              help="AdamW weight decay (not on gains, biases, embeddings, logit scale).")
@click.option("--warmup-steps", type=int, default=None, help="Linear warmup steps (default: 10% of the run).")
@click.option("--grad-clip", type=float, default=_default(T, "grad_clip"), show_default=True,
              help="Clip the gradient norm to this (0: off).")
@click.option("--label-smoothing", type=float, default=_default(T, "label_smoothing"), show_default=True,
              help="Label smoothing of the contrastive loss (Alpha-CLIP used 0.1).")
@click.option("--freeze-text", is_flag=True, default=False, help="Keep the text tower fixed.")
@click.option("--augment", type=click.Choice(["none", "crop-flip"]), default=_default(T, "augment"),
              show_default=True, help="crop-flip: one random resized crop + flip per clip, frames and masks alike.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default=_default(T, "precision"),
              show_default=True, help="auto: bf16 autocast on CUDA, fp32 elsewhere.")
@click.option("--grad-checkpointing", is_flag=True, default=False, help="Recompute activations to save memory.")
@click.option("--device", default=_default(T, "device"), show_default=True,
              help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")
@click.option("--seed", type=int, default=_default(T, "seed"), show_default=True, help="Seed of data order and draws.")
@click.option("--save-every", type=int, default=_default(T, "save_every"), show_default=True,
              help="Checkpoint every N steps (and at the end).")
@click.option("--keep-last", type=int, default=_default(T, "keep_last"), show_default=True,
              help="Step checkpoints to keep (best.pt is kept apart).")
@click.option("--log-every", type=int, default=_default(T, "log_every"), show_default=True,
              help="Console line every N steps (metrics.jsonl gets every step).")
@click.option("--val-every", type=int, default=_default(T, "val_every"), show_default=True,
              help="Validate every N steps (0: at each epoch end).")
@click.option("--tensorboard/--no-tensorboard", default=_default(T, "tensorboard"), show_default=True,
              help="Write TensorBoard events to RUN_DIR/tb.")
@click.option("--resume", default=None, help="Checkpoint file or run folder to resume (default: --out's own).")
def train(**kwargs: Any) -> None:
    """Train Alpha-CLIP on shards (one process, or many under torchrun -m fda train).

    Ctrl-C or SIGTERM finishes the current step, saves a checkpoint and exits 130 (143 for SIGTERM).

    Resuming (rerunning into a run folder with checkpoints, or --resume) refuses a changed --model, --pretrained,
    --alpha-checkpoint, --no-alpha, --freeze-text or data option (SHARDS_DIR, --split, --batch-size, --accum-steps,
    --captions, --seed, --shuffle-buffer, --augment). Every other option (learning rates, --weight-decay,
    --warmup-steps, --grad-clip, --label-smoothing, run length, the --*-every intervals, --val-split, --precision,
    --device, --loader-workers, ...) may change: it applies from the resumed step and is recorded under "changes"
    in RUN_DIR/train_config.json.
    """
    from fda.eval.evaluate import validate
    from fda.train.run import run_train

    ctx = click.get_current_context()
    if "fda_train_workers" in ctx.meta:
        if ctx.get_parameter_source("workers") == click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError("pass --loader-workers only (--workers is its deprecated spelling)")
        kwargs["workers"] = ctx.meta["fda_train_workers"]
    cfg = build_config(TrainConfig, **kwargs)
    result = run_stage(run_train, cfg, validate if cfg.val_split != "none" else None)
    click.echo(result.summary())


# --- fda eval, embed, search -------------------------------------------------------------------------------------
from fda.config import EmbedConfig, EvalConfig, SearchConfig  # noqa: E402

E = EvalConfig
_SPLIT_CHOICE = click.Choice(["train", "val", "test"])


@cli.command("eval")
@click.option("--split", type=_SPLIT_CHOICE, default=_default(E, "split"), show_default=True,
              help="Split to evaluate.")
@click.option("--shards", default=None, help="Shard set folder (default: the one the run or checkpoint was trained "
              "on, as its train_config.json records, else ./shards).")
@click.option("--run", default=None, help="Run folder: evaluate its best checkpoint (default: newest run).")
@click.option("--checkpoint", default=None, help="An fda checkpoint file.")
@click.option("--model", default=None, help="Evaluate an untrained model (zero-shot), e.g. ViT-B-32 or fda-tiny.")
@click.option("--pretrained", default=None,
              help="Its weights: an open_clip tag (openai), a file, or 'none' for random init (with --seed).")
@click.option("--alpha-checkpoint", default=None, help="Official Alpha-CLIP vision weights over --pretrained.")
@click.option("--runs-dir", default=_default(E, "runs_dir"), show_default=True, help="Where runs are looked for.")
@click.option("--frames", type=int, default=None,
              help="Frames per clip the shards must hold (default: what the shards' manifest says).")
@click.option("--batch-size", type=int, default=_default(E, "batch_size"), show_default=True,
              help="Clips per forward pass.")
@click.option("--text-batch-size", type=int, default=_default(E, "text_batch_size"), show_default=True,
              help="Captions per forward pass.")
@click.option("--workers", type=int, default=_default(E, "workers"), show_default=True,
              help="Image decoding threads.")
@click.option("--device", default=_default(E, "device"), show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--dsl", is_flag=True, default=_default(E, "dsl"),
              help="Add dual-softmax (DSL) numbers in separate columns.")
@click.option("--baseline", is_flag=True, default=_default(E, "baseline"),
              help="Also evaluate without the alpha channel (plain CLIP meanP), side by side.")
@click.option("--out", default=None, help="Report folder (default: the run folder).")
@click.option("--cache/--no-cache", default=_default(E, "cache"), show_default=True,
              help="Reuse features cached for the same model and shards.")
@click.option("--seed", type=int, default=_default(E, "seed"), show_default=True,
              help="Initialisation seed of a model without weights.")
def eval_command(**kwargs: Any) -> None:
    """Text-video retrieval metrics (R@1/5/10, MdR, MnR both ways) exactly as the field reports them."""
    from fda.eval.retrieval import run_eval

    cfg = build_config(EvalConfig, **kwargs)
    result = run_stage(run_eval, cfg)
    click.echo(result.table())
    click.echo(f"\nreport: {result.report_path}")


M = EmbedConfig


@cli.command()
@click.option("--out", required=True, help="Folder for the embeddings (EMB_DIR).")
@click.option("--shards", default=None, help="Shard set folder (default: the one the run or checkpoint was trained "
              "on, as its train_config.json records, else ./shards).")
@click.option("--split", default=None, help="Comma list of splits (default: all).")
@click.option("--run", default=None, help="Run folder: use its best checkpoint.")
@click.option("--checkpoint", default=None, help="An fda checkpoint file.")
@click.option("--model", default=None, help="An untrained model name (ViT-B-32, fda-tiny, ...).")
@click.option("--pretrained", default=None,
              help="Its weights: an open_clip tag (openai), a file, or 'none' for random init (with --seed).")
@click.option("--alpha-checkpoint", default=None, help="Official Alpha-CLIP vision weights over --pretrained.")
@click.option("--runs-dir", default=_default(M, "runs_dir"), show_default=True, help="Where runs are looked for.")
@click.option("--batch-size", type=int, default=_default(M, "batch_size"), show_default=True,
              help="Clips per forward pass.")
@click.option("--text-batch-size", type=int, default=_default(M, "text_batch_size"), show_default=True,
              help="Captions per forward pass.")
@click.option("--chunk-size", type=int, default=_default(M, "chunk_size"), show_default=True,
              help="Rows per .npy file.")
@click.option("--captions/--no-captions", default=_default(M, "captions"), show_default=True,
              help="Also embed the captions.")
@click.option("--index", type=click.Choice(["none", "hnsw"]), default=_default(M, "index"), show_default=True,
              help="Also build a faiss HNSW index of the videos (optional extra fda[faiss]; for > 1M videos).")
@click.option("--workers", type=int, default=_default(M, "workers"), show_default=True,
              help="Image decoding threads.")
@click.option("--device", default=_default(M, "device"), show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--seed", type=int, default=_default(M, "seed"), show_default=True,
              help="Initialisation seed of a model without weights.")
@click.option("--overwrite", is_flag=True, default=False, help="Replace earlier embeddings in --out.")
def embed(**kwargs: Any) -> None:
    """Write video and caption embeddings (float16 .npy chunks + ids as JSON) for fda search."""
    from fda.eval.embeddings import run_embed

    cfg = build_config(EmbedConfig, **kwargs)
    result = run_stage(run_embed, cfg)
    click.echo(result.summary())


Q = SearchConfig


@cli.command()
@click.argument("emb_dir", type=click.Path(file_okay=False))
@click.argument("query", required=False)
@click.option("--video", default=None, help="Search with this video's embedding instead of a text query.")
@click.option("-k", "k", type=int, default=_default(Q, "k"), show_default=True, help="Results to show.")
@click.option("--target", type=click.Choice(["videos", "captions"]), default=_default(Q, "target"),
              show_default=True, help="What to search.")
@click.option("--exact", is_flag=True, default=False, help="Flat exact search even when a faiss index exists.")
@click.option("--device", default=_default(Q, "device"), show_default=True, help="Where the text encoder runs.")
@click.option("--json", "json", is_flag=True, default=False,
              help="Print one JSON document ({query, video, target, hits: [{rank, id, score, text}]}) instead.")
def search(**kwargs: Any) -> None:
    """Top matches for a text QUERY (or --video ID) in embeddings written by fda embed.

    Scores are cosine similarities, clipped to [-1, 1] and rounded to 3 decimals (embeddings are stored in float16).
    """
    from fda.eval.embeddings import run_search

    cfg = build_config(SearchConfig, **kwargs)
    hits = run_stage(run_search, cfg)
    if cfg.json:
        import json

        doc = {"query": cfg.query, "video": cfg.video, "target": cfg.target,
               "hits": [{"rank": rank, "id": hit.id, "score": hit.cosine, "text": hit.text}
                        for rank, hit in enumerate(hits, 1)]}
        click.echo(json.dumps(doc, ensure_ascii=False))
        return
    for rank, hit in enumerate(hits, 1):
        click.echo(f"{rank:>3}  {hit.cosine:+.3f}  {hit.id}" + (f"  {hit.text}" if hit.text else ""))


# --- fda demo ----------------------------------------------------------------------------------------------------
from fda.config import DemoConfig  # noqa: E402

D = DemoConfig


@cli.command()
@click.option("--out", default=_default(D, "out"), show_default=True, help="Folder for data, shards, runs, pictures.")
@click.option("--kind", type=click.Choice(BENCH_KINDS), default=_default(D, "kind"), show_default=True,
              help="Benchmark scene set (see fda generate --kind).")
@click.option("--train-videos", type=int, default=_default(D, "train_videos"), show_default=True,
              help="Training clips to generate (even: twins).")
@click.option("--test-videos", type=int, default=_default(D, "test_videos"), show_default=True,
              help="Test clips to generate (even: twins).")
@click.option("--fps", type=int, default=_default(D, "fps"), show_default=True, help="Frame rate of the clips.")
@click.option("--size", type=int, default=_default(D, "size"), show_default=True,
              help="Frame size of clips and shards.")
@click.option("--frames", type=int, default=_default(D, "frames"), show_default=True,
              help="Frames sampled per clip (train and test).")
@click.option("--model", default=_default(D, "model"), show_default=True,
              help="Model (fda-small: small and randomly initialised, learns the scenes on a CPU).")
@click.option("--pretrained", default=None, help="Weights: an open_clip tag, a local file, or 'none'.")
@click.option("--steps", type=int, default=_default(D, "steps"), show_default=True, help="Training steps per run.")
@click.option("--batch-size", type=int, default=_default(D, "batch_size"), show_default=True, help="Batch size.")
@click.option("--lr", type=float, default=_default(D, "lr"), show_default=True, help="Learning rate.")
@click.option("--alpha-lr", type=float, default=_default(D, "alpha_lr"), show_default=True,
              help="Learning rate of the alpha conv.")
@click.option("--loader-workers", type=int, default=_default(D, "loader_workers"), show_default=True,
              help="DataLoader workers while training (0: the main process).")
@click.option("--device", default=_default(D, "device"), show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--seeds", default=_default(D, "seeds"), show_default=True,
              help="Comma list of training seeds; both arms train once per seed (mean±std, paired 95% CI).")
@click.option("--visualize", type=int, default=_default(D, "visualize"), show_default=True,
              help="Test videos to draw with their masks at the end (0: none).")
def demo(**kwargs: Any) -> None:
    """The method on a controlled synthetic set: masks vs --no-alpha, twin accuracy and R@1 over seeds."""
    from fda.lab.demo import run_demo

    cfg = build_config(DemoConfig, **kwargs)
    result = run_stage(run_demo, cfg)
    for line in result.lines:
        click.echo(line)
    click.echo(f"\nA controlled synthetic test of the mechanism ({cfg.kind} scenes, {cfg.model} trained from scratch), "
               "not the paper's MSR-VTT numbers: those need real data and CLIP weights "
               "(fda preprocess + fda train --model ViT-B-32 --pretrained openai).")


# --- fda visualize, masks-stats, sweep, ablate, bench-motion, bench-masks -----------------------------------------
from fda.config import (AblateConfig, BenchMasksConfig, BenchMotionConfig, MasksStatsConfig,  # noqa: E402
                        SweepConfig, VisualizeConfig)

V = VisualizeConfig


@cli.command()
@click.argument("shards_dir", type=click.Path(file_okay=False))
@click.option("--out", default=_default(V, "out"), show_default=True, help="Folder for the sheets and index.html.")
@click.option("--split", type=_SPLIT_CHOICE, default=_default(V, "split"), show_default=True, help="Split to draw.")
@click.option("-n", "n", type=int, default=_default(V, "n"), show_default=True, help="Videos to draw (the first N).")
@click.option("--video", multiple=True, help="Draw this video id (or sample key) instead; repeat for more.")
@click.option("--tile", type=int, default=_default(V, "tile"), show_default=True, help="Side of each picture, px.")
@click.option("--animation", type=click.Choice(["gif", "mp4", "none"]), default=_default(V, "animation"),
              show_default=True, help="Also write the sequence as a GIF (Pillow) or an MP4 (ffmpeg).")
@click.option("--fps", type=float, default=_default(V, "fps"), show_default=True, help="Frame rate of the animation.")
def visualize(**kwargs: Any) -> None:
    """Frames with their masks overlaid: a PNG sheet and an animation per video, and an index.html linking them."""
    from fda.lab.viz import run_visualize

    cfg = build_config(VisualizeConfig, **kwargs)
    result = run_stage(run_visualize, cfg)
    click.echo(result.summary())


S = MasksStatsConfig


@cli.command("masks-stats")
@click.argument("shards_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", default=_default(S, "out"), show_default=True, help="Histogram PNG (numbers go beside it "
              "as .json).")
@click.option("--split", default=None, help="Comma list of splits (default: all).")
@click.option("--bins", type=int, default=_default(S, "bins"), show_default=True, help="Histogram bins.")
def masks_stats(**kwargs: Any) -> None:
    """Mask coverage and full-mask fallback share per split, per shard set (tau), from the sample metas."""
    from fda.lab.viz import run_masks_stats

    cfg = build_config(MasksStatsConfig, **kwargs)
    result = run_stage(run_masks_stats, cfg)
    click.echo(result.table())
    click.echo(f"\nhistogram: {result.figure}\nnumbers: {result.json_path}")


def _budget_options(cls: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The training-budget options shared by ``fda sweep`` and ``fda ablate`` (defaults from ``cls``)."""
    options = [
        click.option("--model", default=_default(cls, "model"), show_default=True,
                     help="Architecture (fda-tiny for a small CPU run)."),
        click.option("--pretrained", default=_default(cls, "pretrained"), show_default=True,
                     help="CLIP weights: an open_clip tag, a file, or 'none' for random init."),
        click.option("--steps", type=int, default=_default(cls, "steps"), show_default=True,
                     help="Training steps per run (none given: --epochs)."),
        click.option("--epochs", type=int, default=_default(cls, "epochs"), show_default=True,
                     help="Run length in epochs when --steps is not given."),
        click.option("--batch-size", type=int, default=_default(cls, "batch_size"), show_default=True,
                     help="Training batch size."),
        click.option("--lr", type=float, default=_default(cls, "lr"), show_default=True, help="Learning rate."),
        click.option("--alpha-lr", type=float, default=_default(cls, "alpha_lr"), show_default=True,
                     help="Learning rate of the alpha conv."),
        click.option("--weight-decay", type=float, default=_default(cls, "weight_decay"), show_default=True,
                     help="AdamW weight decay."),
        click.option("--seeds", default=_default(cls, "seeds"), show_default=True,
                     help="Comma list of training seeds; each arm is trained once per seed (mean±std)."),
        click.option("--train-workers", type=int, default=_default(cls, "train_workers"), show_default=True,
                     help="DataLoader workers while training."),
        click.option("--eval-batch-size", type=int, default=_default(cls, "eval_batch_size"), show_default=True,
                     help="Clips per forward pass in eval."),
        click.option("--device", default=_default(cls, "device"), show_default=True,
                     help="auto, cpu, cuda, cuda:N or mps."),
    ]

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return wrap


W = SweepConfig


@cli.command()
@click.argument("dataset_root", type=click.Path(file_okay=False))
@click.option("--tau", default=_default(W, "tau"), show_default=True, help="Comma list of thresholds (grey levels).")
@click.option("--out", default=_default(W, "out"), show_default=True, help="Folder for shards, runs, table, figure.")
@click.option("--layout", type=click.Choice(LAYOUTS), default=None,
              help="Dataset layout (default: detected).")
@click.option("--split", default=None, help="Comma list of splits to preprocess (default: all).")
@click.option("--size", type=int, default=_default(W, "size"), show_default=True, help="Frame size in the shards.")
@click.option("--frames-train", type=int, default=_default(W, "frames_train"), show_default=True,
              help="Frames per training clip.")
@click.option("--frames-test", type=int, default=_default(W, "frames_test"), show_default=True,
              help="Frames per test clip.")
@click.option("--kernel", type=int, default=_default(W, "kernel"), show_default=True, help="Mask morphology kernel.")
@click.option("--min-area", type=int, default=_default(W, "min_area"), show_default=True,
              help="Smallest moving region kept, px.")
@click.option("--empty-mask", type=click.Choice(["full", "zero"]), default=_default(W, "empty_mask"),
              show_default=True, help="Mask of a motionless frame.")
@click.option("--diff-mode", type=click.Choice(["adjacent", "sampled"]), default=_default(W, "diff_mode"),
              show_default=True, help="Difference with the adjacent decoded frame or the adjacent sampled one.")
@click.option("--camera-motion", type=click.Choice(CAMERA_MOTIONS), default=_default(W, "camera_motion"),
              show_default=True, help="none: the paper's plain difference; compensate: fit the camera's motion between "
              "frame and partner (tracked corners, RANSAC similarity), warp, and difference only where both see the "
              "scene (an implausible fit falls back to the plain rule and is recorded).")
@click.option("--normalize-brightness", is_flag=True, default=False,
              help="Match the partner's brightness to the frame's before differencing (flicker, exposure changes).")
@click.option("--decoder", type=click.Choice(DECODERS), default=_default(W, "decoder"),
              show_default=True, help="Video decoder.")
@click.option("--workers", type=int, default=_default(W, "workers"), show_default=True,
              help="Preprocess worker processes (0: all cores).")
@click.option("--limit", type=int, default=None, help="Take only the first N videos of each split.")
@_budget_options(W)
@click.option("--baseline/--no-baseline", default=_default(W, "baseline"), show_default=True,
              help="Also train the no-mask baseline (--no-alpha) with the same budget.")
@click.option("--overwrite", is_flag=True, default=False, help="Rewrite the shard sets in --out.")
def sweep(**kwargs: Any) -> None:
    """R@1 against tau: shard sets per tau from one decode, same training budget each, eval, table and figure."""
    from fda.lab.experiments import run_sweep

    cfg = build_config(SweepConfig, **kwargs)
    result = run_stage(run_sweep, cfg)
    click.echo(result.table())
    click.echo(f"\ntable: {result.csv_path}\nfigure: {result.figure}")


A = AblateConfig


@cli.command()
@click.argument("shards_dir", type=click.Path(file_okay=False))
@click.option("--out", default=_default(A, "out"), show_default=True, help="Folder for runs, table, figure.")
@click.option("--split", type=_SPLIT_CHOICE, default=_default(A, "split"), show_default=True,
              help="Training split.")
@click.option("--eval-split", type=_SPLIT_CHOICE, default=_default(A, "eval_split"), show_default=True,
              help="Split both arms are evaluated on.")
@_budget_options(A)
def ablate(**kwargs: Any) -> None:
    """Masks vs no masks: the same budget with Alpha-CLIP and with --no-alpha, evaluated on the same split."""
    from fda.lab.experiments import run_ablate

    cfg = build_config(AblateConfig, **kwargs)
    result = run_stage(run_ablate, cfg)
    click.echo(result.table())
    click.echo(f"\ntable: {result.csv_path}\nfigure: {result.figure}")


B = BenchMotionConfig


@cli.command("bench-motion")
@click.option("--out", default=_default(B, "out"), show_default=True, help="Folder for data, shards, runs, results.")
@click.option("--sets", default=_default(B, "sets"), show_default=True,
              help="Comma list of scene kinds (see fda generate --kind).")
@click.option("--arms", default=_default(B, "arms"), show_default=True,
              help="Comma list of arms: masks, no-alpha (the reference, required), full (all-ones masks), shuffled "
              "(another clip's masks), compensated (masks made with --camera-motion compensate).")
@click.option("--condition", type=click.Choice(SCENE_CONDITIONS), default=_default(B, "condition"), show_default=True,
              help="Scene condition of every set (see fda generate --condition), e.g. pan for a moving camera.")
@click.option("--data-seed", type=int, default=_default(B, "data_seed"), show_default=True,
              help="Seed of the generated sets (training seeds: --seeds).")
@click.option("--train-videos", type=int, default=_default(B, "train_videos"), show_default=True,
              help="Training clips per set (even: twins).")
@click.option("--test-videos", type=int, default=_default(B, "test_videos"), show_default=True,
              help="Test clips per set (even: twins).")
@click.option("--size", type=int, default=_default(B, "size"), show_default=True,
              help="Square frame size of the clips and the shards.")
@click.option("--fps", type=int, default=_default(B, "fps"), show_default=True, help="Frame rate of the clips.")
@click.option("--seconds", type=float, default=_default(B, "seconds"), show_default=True, help="Clip length.")
@click.option("--frames", type=int, default=_default(B, "frames"), show_default=True,
              help="Frames sampled per clip (train and test).")
@click.option("--tau", type=float, default=_default(B, "tau"), show_default=True, help="Mask threshold.")
@click.option("--workers", type=int, default=_default(B, "workers"), show_default=True,
              help="Preprocess processes (0: all cores).")
@_budget_options(B)
def bench_motion(**kwargs: Any) -> None:
    """Do masks help where motion names the captioned object? Arms x scene kinds x seeds, twin accuracy and R@k."""
    from fda.lab.motion_bench import run_bench_motion

    cfg = build_config(BenchMotionConfig, **kwargs)
    result = run_stage(run_bench_motion, cfg)
    click.echo(result.table())
    click.echo(f"\n{result.seconds:.0f} s. numbers: {result.json_path}\ntable: {result.csv_path}\n"
               f"figure: {result.figure}")


K = BenchMasksConfig


@cli.command("bench-masks")
@click.option("--out", default=_default(K, "out"), show_default=True, help="Folder for data, shards, results.")
@click.option("--conditions", default=_default(K, "conditions"), show_default=True,
              help="Comma list of scene conditions (see fda generate --condition).")
@click.option("--settings", default=_default(K, "settings"), show_default=True,
              help="Comma list of mask settings: plain (the paper's rule), compensated (--camera-motion compensate), "
              "normalised (--normalize-brightness), both.")
@click.option("--videos", type=int, default=_default(K, "videos"), show_default=True,
              help="Motion clips per condition (even: twins).")
@click.option("--size", type=int, default=_default(K, "size"), show_default=True, help="Square frame size.")
@click.option("--fps", type=int, default=_default(K, "fps"), show_default=True, help="Frame rate of the clips.")
@click.option("--seconds", type=float, default=_default(K, "seconds"), show_default=True, help="Clip length.")
@click.option("--frames", type=int, default=_default(K, "frames"), show_default=True,
              help="Frames sampled per clip.")
@click.option("--tau", type=float, default=_default(K, "tau"), show_default=True, help="Mask threshold.")
@click.option("--data-seed", type=int, default=_default(K, "data_seed"), show_default=True,
              help="Seed of the generated clips.")
@click.option("--workers", type=int, default=_default(K, "workers"), show_default=True,
              help="Preprocess processes (0: all cores).")
def bench_masks(**kwargs: Any) -> None:
    """Mask quality against ground truth: precision, recall, fallback, coverage per scene condition and setting."""
    from fda.lab.motion_bench import run_bench_masks

    cfg = build_config(BenchMasksConfig, **kwargs)
    result = run_stage(run_bench_masks, cfg)
    click.echo(result.table())
    click.echo(f"\n{result.seconds:.0f} s. numbers: {result.json_path}\nfigure: {result.figure}")


def main() -> None:
    """Console entry point."""
    cli(prog_name="fda")


if __name__ == "__main__":
    main()
