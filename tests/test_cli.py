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
from fda import __version__
from fda.cli import cli


def _config_class(command: str):
    name = "".join(part.capitalize() for part in command.split("-")) + "Config"
    return getattr(config, name, None)


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_options_match_config_fields(command):
    cls = _config_class(command)
    assert cls is not None, f"fda {command} has no {command.title().replace('-', '')}Config in fda.config"
    params = {p.name for p in cli.commands[command].params if p.name != "help" and p.expose_value}
    fields = {f.name for f in dataclasses.fields(cls)}
    assert params == fields, f"options only: {params - fields}; fields only: {fields - params}"


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_option_defaults_come_from_the_fields(command):
    cls = _config_class(command)
    defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    for param in cli.commands[command].params:
        if isinstance(param, click.Argument):
            continue
        if param.name in defaults and not getattr(param, "multiple", False) and param.default is not None:
            assert param.default == defaults[param.name], f"--{param.name}: {param.default} != {defaults[param.name]}"


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
