"""The ``fda`` command line: options -> stage configs, FdaError -> exit codes, logging set up once.

Every command's options come from its config class (:func:`config_options` reads the field metadata of
:mod:`fda.config` and :mod:`fda.lab.config`); a command's body builds its config and calls one library function.
Stage modules are imported inside each command so that ``fda --help`` stays fast.
"""

import dataclasses
import functools
import logging
import os
import re
import typing
from typing import Any, Callable, Dict, List, Optional

import click

from fda import __version__
from fda.config import EmbedConfig, EvalConfig, PreprocessConfig, SearchConfig, TrainConfig
from fda.lab.config import (AblateConfig, BenchMasksConfig, BenchMotionConfig, DemoConfig, GenerateConfig,
                            MasksStatsConfig, SweepConfig, VisualizeConfig)
from fda.options import CliField, cli_fields, from_options
from fda.errors import ConfigError, FdaError, path_error
from fda.logs import setup_logging

log = logging.getLogger("fda.cli")


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


# --- options from config classes ----------------------------------------------------------------------------------
_ALIASES = "fda_deprecated_aliases"  # ctx.meta key: dest -> (old spelling, new spelling, value)


def _base_type(annotation: Any) -> Any:
    """``Optional[int]`` -> ``int``; ``Tuple[str, ...]`` -> ``tuple``; a plain type as it is."""
    if typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return typing.get_origin(annotation) or annotation


class AutoNumber(click.ParamType):
    """A number, or the word ``auto`` (given to the config as ``None``: the stage chooses the value and records it)."""

    def __init__(self, kind: Any) -> None:
        self.kind = kind
        self.name = f"{kind.__name__}|auto"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        """``auto`` -> None; anything else as a number of ``kind``."""
        if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
            return None
        try:
            return self.kind(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither a number nor auto", param, ctx)


def _remember_alias(alias: str, field: CliField, ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is not None:
        ctx.meta.setdefault(_ALIASES, {})[field.dest] = (alias, field.flag, value)


def _decorators(field: CliField) -> List[Callable[[Any], Any]]:
    """The Click argument, or the option and its hidden deprecated spellings, of one config field."""
    spec, base, missing = field.spec, _base_type(field.type), field.default is dataclasses.MISSING
    if spec.argument:
        return [click.argument(field.dest, nargs=-1 if base is tuple else 1, required=missing,
                               type=click.Path(file_okay=False) if spec.folder else None,
                               metavar=field.path[-1].upper() if len(field.path) > 1 else None)]
    kw: Dict[str, Any] = {"help": spec.help, "default": None if missing else field.default, "required": missing}
    decls = [field.flag]
    if base is bool and field.default:
        decls = [f"{field.flag}/--no-{field.flag[2:]}"]
        kw["show_default"] = True
    elif base is bool:
        kw["is_flag"] = True
    elif base is tuple:
        kw["multiple"] = True
    elif spec.auto:
        kw["show_default"] = "auto" if field.default is None else True
        kw["type"] = AutoNumber(base)
    else:
        kw["show_default"] = True
        kw["type"] = click.Choice(spec.choices) if spec.choices else {int: click.INT, float: click.FLOAT}.get(base)
    out = [click.option(*decls, field.dest, **kw)]
    for alias in field.aliases:
        out.append(click.option(alias, f"{field.dest}__{alias.strip('-').replace('-', '_')}", type=kw.get("type"),
                                default=None, hidden=True, expose_value=False,
                                callback=functools.partial(_remember_alias, alias, field)))
    return out


def config_options(cls: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the options and arguments of ``cls`` (nested configs flattened, in field order) to a command.

    Raises:
        TypeError: two fields of the command share a spelling (a bug, found when ``fda.cli`` is imported).
    """
    fields = cli_fields(cls)
    spellings = [s for f in fields if not f.spec.argument for s in (f.flag, *f.aliases)]
    clash = sorted({s for s in spellings if spellings.count(s) > 1})
    if clash:
        raise TypeError(f"{cls.__name__}: options spelled alike: {', '.join(clash)}")
    decorators = [d for f in fields for d in _decorators(f)]

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn

    return wrap


def build_config(cls: type, **kwargs: Any) -> Any:
    """Build a stage config from Click's keyword arguments; deprecated spellings used are logged and applied.

    Raises:
        click.UsageError: an option was given in both its old and its new spelling (exit 2).
        FdaClickError: the config refused a value (exit 2, one line).
    """
    ctx = click.get_current_context(silent=True)
    for dest, (alias, new, value) in (ctx.meta.get(_ALIASES, {}) if ctx else {}).items():
        if ctx.get_parameter_source(dest) == click.core.ParameterSource.COMMANDLINE:  # type: ignore[union-attr]
            raise click.UsageError(f"pass {new} only ({alias} is its deprecated spelling)")
        log.warning("fda %s %s is deprecated: use %s %s", ctx.info_name, alias, new, value)  # type: ignore[union-attr]
        kwargs[dest] = value
    _check_output_parents(cls, kwargs)
    return run_stage(from_options, cls, kwargs)


OUTPUT_DESTS = ("out", "out_dir")
"""A command's output path (``--out``, ``OUT_DIR``): it is created, but its parent folder must exist."""


def _check_output_parents(cls: type, kwargs: Dict[str, Any]) -> None:
    """Refuse an output path whose parent folder does not exist (exit 2, as ``--log-file``): a mistyped path is not
    silently created as a tree of folders.

    Raises:
        FdaClickError: the first such path (exit 2, one line).
    """
    from fda.shards.location import is_url

    fields = {f.dest: f for f in cli_fields(cls)}
    for dest in OUTPUT_DESTS:
        value = kwargs.get(dest)
        if dest not in fields or not isinstance(value, str) or not value or is_url(value):
            continue  # a URL's parent is the remote store's business (fda.shards.store checks it)
        parent = os.path.dirname(os.path.abspath(value))
        if not os.path.lexists(parent):
            name = fields[dest].path[-1].upper() if fields[dest].spec.argument else fields[dest].flag
            raise FdaClickError(ConfigError(f"{name} {value!r}: folder {parent} does not exist: create it first, or "
                                            f"choose another {name}"))


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


@cli.command()
@config_options(PreprocessConfig)
def preprocess(**kwargs: Any) -> None:
    """Decode videos once into WebDataset shards of frames plus frame-difference alpha masks."""
    from fda.pipeline.preprocess import run_preprocess

    cfg = build_config(PreprocessConfig, **kwargs)
    result = run_stage(run_preprocess, cfg)
    click.echo(result.summary())


@cli.command()
@config_options(GenerateConfig)
def generate(**kwargs: Any) -> None:
    """Write a synthetic MSR-VTT-layout data set of encoded videos with known content and captions."""
    from fda.lab.scenes import run_generate, summarize

    cfg = build_config(GenerateConfig, **kwargs)
    result = run_stage(run_generate, cfg)
    click.echo(summarize(result))


# --- fda train ---------------------------------------------------------------------------------------------------

@cli.command()
@config_options(TrainConfig)
def train(**kwargs: Any) -> None:
    """Train Alpha-CLIP on shards (one process, or many under torchrun -m fda train).

    Ctrl-C or SIGTERM finishes the current step, saves a checkpoint and exits 130 (143 for SIGTERM).

    Resuming (rerunning into a run folder with checkpoints, or --resume) refuses a changed --model, --pretrained,
    --alpha-checkpoint, --no-alpha, --freeze-text or data option (SHARDS_DIR, --split, --val-from-train,
    --batch-size, --accum-steps, --captions, --seed, --shuffle-buffer, --augment). Every other option (learning
    rates, --weight-decay, --warmup-steps, --grad-clip, --label-smoothing, run length, the --*-every intervals,
    --val-split, --precision, --device, --loader-workers, ...) may change: it applies from the resumed step and is
    recorded under "changes" in RUN_DIR/train_config.json.
    """
    from fda.eval.evaluate import validate
    from fda.train.run import run_train

    cfg = build_config(TrainConfig, **kwargs)
    result = run_stage(run_train, cfg, validate if cfg.val_split != "none" else None)
    click.echo(result.summary())


# --- fda eval, embed, search -------------------------------------------------------------------------------------

@cli.command("eval")
@config_options(EvalConfig)
def eval_command(**kwargs: Any) -> None:
    """Text-video retrieval metrics (R@1/5/10, MdR, MnR both ways) exactly as the field reports them."""
    from fda.eval.retrieval import run_eval

    cfg = build_config(EvalConfig, **kwargs)
    result = run_stage(run_eval, cfg)
    click.echo(result.table())
    click.echo(f"\nreport: {result.report_path}")


@cli.command()
@config_options(EmbedConfig)
def embed(**kwargs: Any) -> None:
    """Write video and caption embeddings (float16 .npy chunks + ids as JSON) for fda search."""
    from fda.eval.embeddings import run_embed

    cfg = build_config(EmbedConfig, **kwargs)
    result = run_stage(run_embed, cfg)
    click.echo(result.summary())


@cli.command()
@config_options(SearchConfig)
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


# --- fda demo, visualize, masks-stats, sweep, ablate, bench-motion, bench-masks ------------------------------------

@cli.command()
@config_options(DemoConfig)
def demo(**kwargs: Any) -> None:
    """The method on a controlled synthetic set: masks vs --no-alpha, twin accuracy and R@1 over seeds."""
    from fda.lab.demo import run_demo

    cfg = build_config(DemoConfig, **kwargs)
    result = run_stage(run_demo, cfg)
    for line in result.lines:
        click.echo(line)
    click.echo(f"\nA controlled synthetic test of the mechanism ({cfg.kind} scenes, {cfg.budget.train.model} trained "
               "from scratch), not the paper's MSR-VTT numbers: those need real data and CLIP weights "
               "(fda preprocess + fda train --model ViT-B-32 --pretrained openai).")


@cli.command()
@config_options(VisualizeConfig)
def visualize(**kwargs: Any) -> None:
    """Frames with their masks overlaid: a PNG sheet and an animation per video, and an index.html linking them."""
    from fda.lab.viz import run_visualize

    cfg = build_config(VisualizeConfig, **kwargs)
    result = run_stage(run_visualize, cfg)
    click.echo(result.summary())


@cli.command("masks-stats")
@config_options(MasksStatsConfig)
def masks_stats(**kwargs: Any) -> None:
    """Mask coverage and full-mask fallback share per split, per shard set (tau), from the sample metas."""
    from fda.lab.viz import run_masks_stats

    cfg = build_config(MasksStatsConfig, **kwargs)
    result = run_stage(run_masks_stats, cfg)
    click.echo(result.table())
    click.echo(f"\nhistogram: {result.figure}\nnumbers: {result.json_path}")


@cli.command()
@config_options(SweepConfig)
def sweep(**kwargs: Any) -> None:
    """R@1 against tau: shard sets per tau from one decode, same training budget each, eval, table and figure."""
    from fda.lab.experiments import run_sweep

    cfg = build_config(SweepConfig, **kwargs)
    result = run_stage(run_sweep, cfg)
    click.echo(result.table())
    click.echo(f"\ntable: {result.csv_path}\nfigure: {result.figure}")


@cli.command()
@config_options(AblateConfig)
def ablate(**kwargs: Any) -> None:
    """Masks vs no masks: the same budget with Alpha-CLIP and with --no-alpha, evaluated on the same split."""
    from fda.lab.experiments import run_ablate

    cfg = build_config(AblateConfig, **kwargs)
    result = run_stage(run_ablate, cfg)
    click.echo(result.table())
    click.echo(f"\ntable: {result.csv_path}\nfigure: {result.figure}")


@cli.command("bench-motion")
@config_options(BenchMotionConfig)
def bench_motion(**kwargs: Any) -> None:
    """Do masks help where motion names the captioned object? Arms x scene kinds x seeds, twin accuracy and R@k."""
    from fda.lab.motion_bench import run_bench_motion

    cfg = build_config(BenchMotionConfig, **kwargs)
    result = run_stage(run_bench_motion, cfg)
    click.echo(result.table())
    click.echo(f"\n{result.seconds:.0f} s. numbers: {result.json_path}\ntable: {result.csv_path}\n"
               f"figure: {result.figure}")


@cli.command("bench-masks")
@config_options(BenchMasksConfig)
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
