"""The CLI surface: every command's options map 1:1 onto its config dataclass; version, help, exit codes."""

import dataclasses
import errno
import os
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

import fda.config as config
import fda.lab.config as lab_config
import fda.options as options
from fda import __version__
from fda.cli import cli


def _config_class(command: str):
    name = "".join(part.capitalize() for part in command.split("-")) + "Config"
    return getattr(config, name, None) or getattr(lab_config, name, None)


def _leaf_paths(cls, exclude=()):
    """Every field of ``cls`` that must be an option: nested configs' fields in place of the nested field."""
    paths = []
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        nest = f.metadata.get("nest")
        if nest is None:
            paths.append(f.name)
            continue
        names = {g.name for g in dataclasses.fields(f.type)}
        own = {e for e in nest.exclude if "." not in e}
        assert own <= names, f"{cls.__name__}.{f.name} excludes unknown fields"
        assert set(nest.aliases) <= names, f"{cls.__name__}.{f.name} has aliases of unknown fields"
        deeper = tuple(e for e in exclude if e.startswith(f.name + "."))  # dotted: the outer config's reach
        inner = tuple(own) + tuple(e.split(".", 1)[1] for e in deeper) + tuple(e for e in nest.exclude if "." in e)
        if nest.only:  # only these (a dotted one keeps its first part's config)
            assert {o.split(".")[0] for o in nest.only} <= names, f"{cls.__name__}.{f.name} keeps unknown fields"
            inner += tuple(names - {o.split(".")[0] for o in nest.only})
        paths += [f"{f.name}__{p}" for p in _leaf_paths(f.type, inner)]
    return paths


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_options_match_config_fields(command):
    cls = _config_class(command)
    assert cls is not None, (f"fda {command} has no {command.title().replace('-', '')}Config in fda.config or "
                             f"fda.lab.config")
    names = [p.name for p in cli.commands[command].params if p.name != "help" and p.expose_value]
    params, fields = set(names), set(_leaf_paths(cls))
    assert params == fields, f"options only: {params - fields}; fields only: {fields - params}"
    assert len(names) == len(params), "a field reached by two options"
    spellings = [o for p in cli.commands[command].params for o in p.opts + p.secondary_opts]
    assert len(spellings) == len(set(spellings)), f"fda {command}: two options spelled alike"


# Each command's required arguments, and the config they must give when nothing else is passed.
REQUIRED = {
    "preprocess": (["root"], lambda: config.PreprocessConfig("root")),
    "generate": (["out"], lambda: lab_config.GenerateConfig("out")),
    "train": (["shards"], lambda: config.TrainConfig("shards")),
    "eval": ([], lambda: config.EvalConfig()),
    "embed": (["--out", "emb"], lambda: config.EmbedConfig("emb")),
    "search": (["emb", "cats"], lambda: config.SearchConfig("emb", "cats")),
    "demo": ([], lambda: lab_config.DemoConfig()),
    "visualize": (["shards"], lambda: lab_config.VisualizeConfig("shards")),
    "masks-stats": (["a", "b"], lambda: lab_config.MasksStatsConfig(("a", "b"))),
    "sweep": (["root"], lambda: lab_config.SweepConfig(config.PreprocessConfig("root"))),
    "ablate": (["shards"], lambda: lab_config.AblateConfig("shards")),
    "bench-motion": ([], lambda: lab_config.BenchMotionConfig()),
    "bench-masks": ([], lambda: lab_config.BenchMasksConfig()),
}


def _parse(command, args):
    """The config ``fda COMMAND ARGS`` builds, without running the command."""
    from fda.cli import build_config

    ctx = cli.commands[command].make_context(command, list(args))
    with ctx:
        return build_config(_config_class(command), **ctx.params)


def _at(cfg, dest):
    for name in dest.split("__"):
        cfg = getattr(cfg, name)
    return cfg


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_option_defaults_come_from_the_fields(command):
    args, expected = REQUIRED[command]
    default = expected()
    assert _parse(command, args) == default
    for param in cli.commands[command].params:
        if isinstance(param, click.Argument) or not param.expose_value:
            continue
        if not getattr(param, "multiple", False) and param.default is not None:
            assert param.default == _at(default, param.name), f"--{param.name}: {param.default}"


def test_composite_defaults_come_from_their_nested_instances():
    bench, demo = lab_config.BenchMotionConfig(), lab_config.DemoConfig()
    assert bench.budget == lab_config.SCENE_BUDGET and bench.budget.train.model == "fda-small"
    assert (demo.budget.steps, demo.budget.seeds, demo.budget.train.lr) == (200, "0,1", 1e-3)
    assert lab_config.BenchMasksConfig().scenes.frames == 6 and bench.scenes.frames == 4
    sweep_help = CliRunner().invoke(cli, ["bench-motion", "--help"], terminal_width=200).output
    assert "fda-small" in sweep_help and "[default: 150]" in sweep_help


def test_choices_are_the_constants_they_are_validated_against():
    constants = [v for m in (config, lab_config) for k, v in vars(m).items() if k.isupper() and isinstance(v, tuple)]
    seen = 0
    for command in cli.commands.values():
        for param in command.params:
            if isinstance(param.type, click.Choice):
                cls = _config_class(command.name)
                spec = next(f.spec for f in options.cli_fields(cls) if f.dest == param.name)
                assert tuple(param.type.choices) == spec.choices, param.name
                assert any(spec.choices is c for c in constants), f"{command.name} --{param.name}: not a constant"
                seen += 1
    assert seen >= 30
    import inspect

    import fda.cli

    assert "click.Choice([" not in inspect.getsource(fda.cli)


ALIASES = [(c, f.flag, a, f.dest) for c in sorted(cli.commands) for f in options.cli_fields(_config_class(c))
           for a in f.aliases]


def test_every_command_that_trains_spells_dataloader_workers_alike():
    loader = {(c, a) for c, flag, a, _ in ALIASES if flag == "--loader-workers"}
    assert loader == {("train", "--workers"), ("sweep", "--train-workers"), ("ablate", "--train-workers"),
                      ("bench-motion", "--train-workers"), ("demo", "--train-workers")}
    # eval and embed decode with threads; --workers (processes, 0: all cores) stays preprocess's word
    threads = {(c, a) for c, flag, a, _ in ALIASES if flag == "--decode-threads"}
    assert threads == {("eval", "--workers"), ("embed", "--workers")}
    assert {flag for _, flag, _, _ in ALIASES} == {"--loader-workers", "--decode-threads"}


@pytest.mark.parametrize("command,new,alias,dest", ALIASES)
def test_old_spellings_still_parse_with_a_warning(command, new, alias, dest, caplog):
    args = REQUIRED[command][0]
    with caplog.at_level("WARNING", logger="fda.cli"):
        old = _parse(command, [*args, alias, "3"])
    assert _at(old, dest) == 3 and old == _parse(command, [*args, new, "3"])
    assert f"fda {command} {alias} is deprecated: use {new} 3" in caplog.text
    res = CliRunner().invoke(cli, [command, *args, alias, "1", new, "2"])
    assert res.exit_code == 2 and f"pass {new} only ({alias} is its deprecated spelling)" in res.stderr


def test_sweep_takes_every_preprocess_and_train_option():
    cfg = _parse("sweep", ["root", "--tau", "0,25", "--captions", "caps.csv", "--msrvtt-train", "7k",
                           "--jpeg-quality", "70", "--augment", "crop-flip", "--precision", "fp32",
                           "--accum-steps", "2", "--workers", "3", "--train-workers", "1", "--steps", "5"])
    pre = cfg.preprocess_config(25.0, "out/tau25")
    assert (pre.dataset_root, pre.captions, pre.msrvtt_train, pre.jpeg_quality, pre.workers, pre.mask.tau, pre.out) == (
        "root", "caps.csv", "7k", 70, 3, 25.0, "out/tau25")
    run = cfg.budget.run_config("shards", "run", seed=4, no_alpha=True)
    assert (run.augment, run.precision, run.accum_steps, run.workers, run.max_steps, run.seed, run.no_alpha) == (
        "crop-flip", "fp32", 2, 1, 5, 4, True)
    bench = _parse("bench-motion", ["--augment", "crop-flip", "--loader-workers", "2", "--train-videos", "8",
                                    "--batch-size", "4"])
    run = bench.budget.run_config("shards", "run", seed=0, no_alpha=False, shuffle_buffer=8)
    expected = ("crop-flip", 2, 8, "fda-small", 150)
    assert (run.augment, run.workers, run.shuffle_buffer, run.model, run.max_steps) == expected


@pytest.mark.parametrize("args,message", [
    (["sweep", "root", "--jpeg-quality", "0"], "--jpeg-quality must be in 1..100, got 0"),
    (["sweep", "root", "--train-workers", "-1"], "--loader-workers must be >= 0"),
    (["ablate", "shards", "--steps", "0"], "--steps must be an integer >= 1"),
    (["bench-motion", "--device", "tpu"], "--device must be auto, cpu, cuda, cuda:N or mps, got 'tpu'"),
    (["demo", "--size", "33"], "--size must be an even integer in 16..1024, got 33"),
])
def test_a_bad_composed_option_is_a_one_line_error(args, message):
    res = CliRunner().invoke(cli, args)
    _one_line_error(res, 2, message)


def test_recorded_train_configs_load_back():
    recorded = dataclasses.asdict(config.TrainConfig("shards", workers=2))
    assert "workers" in recorded and config.TrainConfig(**recorded).workers == 2


def test_version_and_help_are_fast_and_light():
    res = CliRunner().invoke(cli, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output
    # `fda --help` must not import torch, open_clip, webdataset or cv2.
    code = ("import sys; from fda.cli import cli; "
            "heavy = [m for m in ('torch', 'open_clip', 'webdataset', 'cv2') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_option_is_a_usage_error():
    res = CliRunner().invoke(cli, ["preprocess", "x", "--no-such-option"])
    assert res.exit_code == 2 and "No such option" in res.stderr


def test_python_dash_m_fda_works():
    out = subprocess.run([sys.executable, "-m", "fda", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout


def test_log_file_receives_debug_lines(tmp_path):
    log = tmp_path / "fda.log"
    res = CliRunner().invoke(cli, ["--log-file", str(log), "preprocess", str(tmp_path / "missing")])
    assert res.exit_code == 3
    assert log.exists()


def _one_line_error(res, code, *texts):
    assert res.exit_code == code, res.output
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in res.stderr, res.stderr
    for text in texts:
        assert text in errors[0], errors[0]


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "taken"
    path.write_text("not a folder")
    return str(path)


@pytest.mark.parametrize("command", ["preprocess", "train", "embed"])
def test_out_naming_a_file_or_an_impossible_place_is_a_one_line_error(command, a_file, tmp_path, eval_shards):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.mp4").write_bytes(b"\x00")
    (data / "captions.csv").write_text("video,caption\na.mp4,a caption\n")
    args = {"preprocess": ["preprocess", str(data)], "train": ["train", eval_shards, "--model", "fda-tiny",
                                                               "--pretrained", "none", "--max-steps", "1"],
            "embed": ["embed", "--shards", eval_shards, "--model", "fda-tiny", "--pretrained", "none"]}[command]
    res = CliRunner().invoke(cli, [*args, "--out", a_file])
    _one_line_error(res, 2, f"--out {a_file!r} is a file, not a folder: choose another --out")
    res = CliRunner().invoke(cli, [*args, "--out", a_file + "/sub"])
    _one_line_error(res, 2, f"--out {a_file + '/sub'!r}: Not a directory")
    if os.path.isdir("/proc/self"):
        res = CliRunner().invoke(cli, [*args, "--out", "/proc/nope"])
        _one_line_error(res, 2, "--out '/proc/nope': No such file or directory: choose another --out")


@pytest.mark.parametrize("command", ["preprocess", "train", "embed", "visualize", "generate"])
def test_out_with_a_missing_parent_folder_is_exit_2_and_creates_nothing(command, tmp_path, eval_shards):
    """The README's rule, like --log-file: an --out is created, but its parent folder must exist."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "captions.csv").write_text("video,caption\na.mp4,a caption\n")
    out = str(tmp_path / "nonexistent" / "dir" / "x")
    args = {"preprocess": ["preprocess", str(data), "--out", out],
            "train": ["train", eval_shards, "--model", "fda-tiny", "--max-steps", "1", "--out", out],
            "embed": ["embed", "--shards", eval_shards, "--model", "fda-tiny", "--pretrained", "none", "--out", out],
            "visualize": ["visualize", eval_shards, "--out", out],
            "generate": ["generate", out]}[command]
    res = CliRunner().invoke(cli, args)
    name = "OUT_DIR" if command == "generate" else "--out"
    _one_line_error(res, 2, f"{name} {out!r}: folder {os.path.dirname(out)} does not exist: create it first, or "
                            f"choose another {name}")
    assert not (tmp_path / "nonexistent").exists()


def test_unwritable_log_file_is_a_one_line_error(tmp_path):
    res = CliRunner().invoke(cli, ["--log-file", "/nonexistent/dir/x.log", "preprocess", str(tmp_path)])
    _one_line_error(res, 2, "--log-file '/nonexistent/dir/x.log': folder /nonexistent/dir does not exist: name a "
                            "file in a folder you can write to")


def test_path_errors_say_environment_when_the_machine_refuses():
    from fda.errors import ConfigError, EnvError, path_error

    err = path_error("--out", "/ro/x", PermissionError(errno.EACCES, "Permission denied"), "choose another")
    assert isinstance(err, EnvError) and err.exit_code == 4
    assert str(err) == "--out '/ro/x': Permission denied: choose another"
    assert isinstance(path_error("--out", "/x", OSError(errno.EROFS, "Read-only file system"), "fix"), EnvError)
    assert isinstance(path_error("--out", "/f/x", NotADirectoryError(errno.ENOTDIR, "Not a directory"), "fix"),
                      ConfigError)


@pytest.mark.parametrize("command", ["visualize", "masks-stats", "sweep", "ablate", "demo"])
def test_other_commands_refuse_a_file_as_out_in_one_line(command, a_file, eval_shards):
    tiny = ["--model", "fda-tiny", "--pretrained", "none", "--steps", "1", "--batch-size", "2"]
    args = {"visualize": ["visualize", eval_shards, "--out", a_file],
            "masks-stats": ["masks-stats", eval_shards, "--out", a_file + "/hist.png"],
            "sweep": ["sweep", os.path.dirname(a_file), "--out", a_file, *tiny],
            "ablate": ["ablate", eval_shards, "--out", a_file, *tiny],
            "demo": ["demo", "--out", a_file]}[command]
    res = CliRunner().invoke(cli, args)
    _one_line_error(res, 2, "--out", a_file)


def test_train_help_shows_percent_and_loader_workers():
    res = CliRunner().invoke(cli, ["train", "--help"], terminal_width=200)
    assert res.exit_code == 0
    assert "10% of the run" in res.output and "%%" not in res.output
    assert "--loader-workers" in res.output and "--workers " not in res.output  # the old spelling is hidden


def test_verbose_is_accepted_after_the_subcommand(tmp_path):
    import logging

    for args in (["-v", "preprocess", str(tmp_path / "missing")], ["preprocess", str(tmp_path / "missing"), "-v"]):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 3, res.output
        assert logging.getLogger().level == logging.DEBUG
        CliRunner().invoke(cli, ["preprocess", str(tmp_path / "missing")])
        assert logging.getLogger().level == logging.INFO


def test_single_letter_options_are_named_with_one_dash(tmp_path):
    res = CliRunner().invoke(cli, ["visualize", str(tmp_path), "-n", "0"])
    assert res.exit_code == 2 and "Error: -n must be an integer >= 1" in res.stderr and "--n" not in res.stderr
    res = CliRunner().invoke(cli, ["search", str(tmp_path), "cats", "-k", "0"])
    assert res.exit_code == 2 and "Error: -k must be" in res.stderr


@pytest.mark.parametrize("content,cause", [
    (b"not a checkpoint at all\n", "not a PyTorch checkpoint"),
    (b"", "empty or truncated file"),
    ("tar", "a tar archive"),
])
def test_unreadable_checkpoint_error_names_the_file_and_the_cause(eval_shards, tmp_path, content, cause):
    import io
    import tarfile

    path = tmp_path / "x.pt"
    if content == "tar":
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("v0.f00.jpg")
            info.size = 3
            tar.addfile(info, io.BytesIO(b"abc"))
        content = buf.getvalue()
    path.write_bytes(content)
    res = CliRunner().invoke(cli, ["eval", "--checkpoint", str(path), "--shards", eval_shards])
    assert res.exit_code == 3
    assert res.stderr.startswith(f"Error: {path} is not an fda checkpoint: {cause}"), res.stderr
    assert res.stderr.count("\n") == 1 and "weights_only" not in res.stderr and "ReadError" not in res.stderr


@pytest.mark.parametrize("command,has_epochs", [("demo", False), ("bench-motion", False), ("sweep", True),
                                                ("ablate", True)])
def test_runs_of_a_fixed_step_count_offer_no_epochs_option(command, has_epochs):
    # demo and bench-motion always train --steps (>= 2), so an --epochs there would do nothing
    opts = {o for p in cli.commands[command].params for o in p.opts}
    assert ("--epochs" in opts) == has_epochs and "--steps" in opts


def test_an_experiment_records_only_its_options():
    # sweep.json's "config": what the user could choose, nested like the configs; not the fields the sweep sets
    record = options.options_record(lab_config.SweepConfig(config.PreprocessConfig("videos"), tau="0,25"))
    assert record["tau"] == "0,25" and record["preprocess"]["dataset_root"] == "videos"
    assert "tau" not in record["preprocess"] and "out" not in record["preprocess"]
    train = record["budget"]["train"]
    assert train["model"] == "ViT-B-32" and not {"val_split", "seed", "shards_dir", "no_alpha"} & set(train)
    assert "epochs" not in options.options_record(lab_config.BenchMotionConfig())["budget"]["train"]


def test_train_help_names_every_option_a_resume_refuses_to_change():
    """The help's list of options fixed on resume is written by hand: it must name every one the code refuses."""
    import re

    from fda.config import TrainConfig
    from fda.options import spelling
    from fda.train.run import RESUME_FIXED

    res = CliRunner().invoke(cli, ["train", "--help"])
    assert res.exit_code == 0
    text = re.sub(r"-\n\s*", "-", res.output)  # click wraps "--freeze-text" as "--freeze-\n  text"
    resume_part = text[text.index("Resuming"):text.index("Every other option")]
    missing = [spelling(TrainConfig, name) for name in RESUME_FIXED if spelling(TrainConfig, name) not in resume_part]
    assert not missing, missing
