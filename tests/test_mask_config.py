"""MaskConfig: every mask option declared once, and the one object the fingerprint, the workers, the sample json,
the manifest and the reports read (issue 21); old shard sets keep their fingerprints."""

import dataclasses
import json
import shutil

import pytest
from click.testing import CliRunner

from fda.cli import cli
from fda.config import (DATA_FIELDS, OPTIONAL_DATA_FIELDS, RULE_DATA_FIELDS, SAMPLE_FIELDS, MaskConfig,
                        PreprocessConfig)
from fda.lab.config import BenchMasksConfig, BenchMotionConfig, Scenes, SweepConfig
from fda.options import cli_fields, nested, opt, options_record, spelling
from fda.pipeline.preprocess import _config_record, run_preprocess
from fda.pipeline.resume import digest
from fda.shards.schema import mask_from_json, mask_json, shown_mask

# Written by fda before MaskConfig (main at 88f4617): a change here changes every shard set's fingerprint, and a
# rerun into an old shard set would redo it instead of resuming.
OLD_DATA_FIELDS = ("layout", "msrvtt_train", "captions", "split", "frames_train", "frames_test", "size", "tau",
                   "kernel", "min_area", "empty_mask", "diff_mode", "camera_motion", "normalize_brightness",
                   "jpeg_quality", "samples_per_shard", "decoder", "min_decodable", "limit")
OLD_DIGESTS = [
    ({}, "38136fc3c514c13cb538651aa09a09a9d23e03089eaf667769caa9b924b4c802"),
    ({"camera_motion": "compensate", "normalize_brightness": True},
     "c568d4ef44a4c917550d0eca795b5af31342a2a98adc3c950da6745932cb51ea"),
    ({"mask_rule": "mv", "flow_threshold": 2.0}, "4d7af8ae59cd9077effb4429ed6eb4fa6fa64d3963eb1cb74c63fbdcd82f00d7"),
    ({"mask_rule": "diff", "flow_threshold": 2.0, "tau": 12.0, "kernel": 0, "diff_mode": "sampled",
      "empty_mask": "zero"}, "a1c76970d6b550dd4e12d05e39c909ec47a6dcb6035025ea406c123a5cf9a5ba"),
]
OLD_CONFIG_RECORD = ["dataset_root", "out", "layout", "msrvtt_train", "captions", "split", "frames_train",
                     "frames_test", "size", "tau", "kernel", "min_area", "empty_mask", "diff_mode", "camera_motion",
                     "normalize_brightness", "jpeg_quality", "samples_per_shard", "decoder", "min_decodable",
                     "skip_damaged_frames", "video_timeout", "workers", "engine", "ray_address", "max_failure_rate",
                     "limit", "overwrite", "retry_failed", "full_duration"]


def test_name_lists_fingerprints_and_manifest_config_are_those_of_old_shard_sets():
    assert DATA_FIELDS == OLD_DATA_FIELDS  # order too: config.json is written in this order
    assert OPTIONAL_DATA_FIELDS == ("skip_damaged_frames", "full_duration")
    assert RULE_DATA_FIELDS == ("mask_rule", "flow_threshold")
    assert SAMPLE_FIELDS == tuple(n for n in OLD_DATA_FIELDS if n not in ("split", "samples_per_shard")) + (
        "skip_damaged_frames", "full_duration", "mask_rule", "flow_threshold")
    for options, old in OLD_DIGESTS:
        assert digest(PreprocessConfig(".", mask=MaskConfig(**options)).data_fields()) == old, options
    assert list(_config_record(PreprocessConfig("."))) == OLD_CONFIG_RECORD
    flow = list(_config_record(PreprocessConfig(".", mask=MaskConfig(mask_rule="flow"))))
    assert flow == OLD_CONFIG_RECORD[:16] + ["mask_rule", "flow_threshold"] + OLD_CONFIG_RECORD[16:]


def _other_value(f: "dataclasses.Field"):
    """A valid value of mask field ``f`` other than its default."""
    spec = f.metadata["cli"]
    if spec.choices:
        return next(c for c in spec.choices if c != f.default)
    if isinstance(f.default, bool):
        return not f.default
    return f.default + 2  # kernel 3 -> 5 (odd), tau 25 -> 27, ...


@pytest.mark.parametrize("field", dataclasses.fields(MaskConfig), ids=lambda f: f.name)
def test_every_mask_option_reaches_the_fingerprint_the_sample_json_and_the_reports(field):
    """Iterates MaskConfig's own declaration: a field added later is checked with no edit here."""
    rule = {} if field.name in RULE_DATA_FIELDS else {"mask_rule": "diff"}
    base = MaskConfig(**({"mask_rule": "flow"} if field.name in RULE_DATA_FIELDS and field.name != "mask_rule"
                         else {}), **rule)
    mask = dataclasses.replace(base, **{field.name: _other_value(field)})
    assert mask != base
    cfg = PreprocessConfig(".", mask=mask)
    fingerprint = cfg.data_fields()
    assert fingerprint[field.name] == getattr(mask, field.name)  # the stale-shard check sees it
    assert fingerprint != PreprocessConfig(".", mask=base).data_fields()
    record = mask_json(mask)
    assert record[field.name] == getattr(mask, field.name) and mask_from_json(record) == mask  # the sample json
    assert shown_mask(record)[field.name] == getattr(mask, field.name)  # eval reports, viewers
    assert _config_record(cfg)[field.name] == getattr(mask, field.name)  # the manifest's config, flat
    flags = {o for p in cli.commands["preprocess"].params for o in p.opts}
    assert spelling(PreprocessConfig, field.name) in flags  # resume messages name the real option


@dataclasses.dataclass(frozen=True)
class NotedMask(MaskConfig):
    """A mask config with one more rule parameter, declared once (as a new field of MaskConfig would be)."""

    note: str = opt("plain", "A toy rule parameter.", choices=("plain", "noted"), role="sample-unless-diff")


@dataclasses.dataclass(frozen=True)
class NotedPreprocess(PreprocessConfig):
    mask: NotedMask = nested(NotedMask(), flat=True)


def test_a_new_mask_field_declared_once_reaches_cli_fingerprint_workers_sample_json_and_manifest(
        tiny_video, tmp_path):
    flags = [f.flag for f in cli_fields(NotedPreprocess)]
    assert flags.index("--note") == flags.index("--flow-threshold") + 1  # an option, where the mask options are
    root = tmp_path / "data"
    root.mkdir()
    shutil.copy(tiny_video, root / "tiny.mp4")
    (root / "captions.csv").write_text("video,caption,split\ntiny.mp4,a test pattern,test\n")
    cfg = NotedPreprocess(str(root), out=str(tmp_path / "out"), size=32, frames_test=3, workers=1,
                          mask=NotedMask(mask_rule="flow", note="noted"))
    assert cfg.data_fields()["note"] == "noted"
    run_preprocess(cfg)
    out = tmp_path / "out"
    assert json.load(open(out / "config.json"))["data"]["note"] == "noted"
    assert json.load(open(out / "test-000000.stats.json"))["inputs"]["options"]["note"] == "noted"
    manifest = json.load(open(out / "manifest.json"))
    assert manifest["config"]["note"] == "noted" and manifest["mask"]["note"] == "noted"
    from fda.shards.reader import decode_sample, iter_samples

    sample = decode_sample(next(iter_samples([str(out / "test-000000.tar")])))
    assert sample["meta"]["mask"]["note"] == "noted"  # written by the worker from the config it was given
    assert "note" not in mask_json(NotedMask())  # a diff setting records what it always did


@pytest.mark.parametrize("command,args", [("preprocess", ["root"]), ("sweep", ["root"]), ("bench-masks", []),
                                          ("bench-motion", []), ("demo", [])])
def test_tau_out_of_range_is_a_one_line_usage_error(command, args):
    result = CliRunner().invoke(cli, [command, *args, "--tau", "300"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --tau must be") and "300" in lines[0], result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["bench-masks", "bench-motion", "demo"])
def test_scenes_take_tau_and_workers_from_preprocess_with_their_checks(command):
    result = CliRunner().invoke(cli, [command, "--workers", "-1"])
    assert result.exit_code == 2 and result.stderr.strip() == "Error: --workers must be >= 0 (0: all cores), got -1"
    scenes = Scenes()
    assert scenes.preprocess_config("d", "o").mask == MaskConfig()  # preprocess's defaults, declared there
    cfg = scenes.preprocess_config("d", "o", {"camera_motion": "compensate"}, split="test")
    assert (cfg.mask.camera_motion, cfg.mask.tau, cfg.size, cfg.frames_test, cfg.split) == (
        "compensate", 25.0, 64, 4, "test")


def test_experiment_records_keep_the_mask_options_flat():
    """sweep.json / bench_*.json: the mask options where they were before MaskConfig (records of main)."""
    assert options_record(BenchMasksConfig())["scenes"] == {"size": 64, "fps": 2, "seconds": 3.0, "frames": 6,
                                                            "tau": 25.0, "data_seed": 0, "workers": 0}
    assert options_record(BenchMotionConfig())["scenes"]["tau"] == 25.0
    record = options_record(SweepConfig(PreprocessConfig("v", mask=MaskConfig(kernel=5))))["preprocess"]
    kept = [n for n in OLD_CONFIG_RECORD if n not in ("out", "tau")]  # sweep sets those itself
    assert list(record) == kept[:14] + ["mask_rule", "flow_threshold"] + kept[14:]
    assert record["kernel"] == 5 and "mask" not in record
    pre = SweepConfig(PreprocessConfig("v", mask=MaskConfig(kernel=5))).preprocess_config(12.5, "o")
    assert (pre.mask.tau, pre.mask.kernel, pre.out) == (12.5, 5, "o")


@dataclasses.dataclass(frozen=True)
class DilatedMask(MaskConfig):
    """A mask option every rule reads, added after shard sets exist: recorded only when on (old sets keep their
    fingerprints), by its value."""

    dilate: int = opt(0, "A toy option: dilate every mask by this many pixels.", role="sample-when-on")


@dataclasses.dataclass(frozen=True)
class DilatedPreprocess(PreprocessConfig):
    mask: DilatedMask = nested(DilatedMask(), flat=True)


def test_an_option_recorded_only_when_on_is_recorded_by_its_value(tiny_video, tmp_path):
    """Old main recorded ``True`` for any such option that was on: --dilate 2 resumed into shards made with
    --dilate 1 (their json saying 1, the manifest 2)."""
    from fda.errors import ConfigError

    assert "dilate" not in DilatedPreprocess(".").data_fields()  # off: the fingerprint of every older shard set
    assert digest(DilatedPreprocess(".").data_fields()) == OLD_DIGESTS[0][1]
    assert DilatedPreprocess(".", mask=DilatedMask(dilate=2)).data_fields()["dilate"] == 2
    assert PreprocessConfig(".", skip_damaged_frames=True).data_fields()["skip_damaged_frames"] is True  # as before
    root = tmp_path / "data"
    root.mkdir()
    shutil.copy(tiny_video, root / "tiny.mp4")
    (root / "captions.csv").write_text("video,caption,split\ntiny.mp4,a test pattern,test\n")
    run = dict(out=str(tmp_path / "out"), size=32, frames_test=2, workers=1)
    run_preprocess(DilatedPreprocess(str(root), mask=DilatedMask(dilate=1), **run))
    with pytest.raises(ConfigError, match="--dilate 1, this run asks 2"):
        run_preprocess(DilatedPreprocess(str(root), mask=DilatedMask(dilate=2), **run))


def test_a_new_rule_parameter_is_left_out_of_a_diff_setting_like_flow_threshold():
    """Old main named mask_rule and flow_threshold by hand: a new rule parameter stayed in a diff set's manifest
    config, and two diff settings differing only in it were two configs."""
    assert NotedMask(note="noted") == NotedMask() and NotedMask(mask_rule="flow", note="noted").note == "noted"
    assert "note" not in _config_record(NotedPreprocess(".", mask=NotedMask(note="noted")))
    assert _config_record(NotedPreprocess(".", mask=NotedMask(mask_rule="flow", note="noted")))["note"] == "noted"


def test_a_rerun_names_the_mask_rule_it_asks_for_not_none(tiny_video, tmp_path):
    """Old main: ``holds shards made with --mask-rule 'flow', this run asks None`` (diff is recorded by leaving the
    rule out); an option recorded only when on reads as its default, not None, in the other direction."""
    from fda.errors import ConfigError
    from fda.pipeline.resume import what_changed, with_options

    root = tmp_path / "data"
    root.mkdir()
    shutil.copy(tiny_video, root / "tiny.mp4")
    (root / "captions.csv").write_text("video,caption,split\ntiny.mp4,a test pattern,test\n")
    run = dict(out=str(tmp_path / "out"), size=32, frames_test=2, workers=1)
    run_preprocess(PreprocessConfig(str(root), mask=MaskConfig(mask_rule="flow"), **run))
    with pytest.raises(ConfigError, match="made with --mask-rule 'flow', this run asks 'diff': pass --overwrite"):
        run_preprocess(PreprocessConfig(str(root), **run))
    videos = {"videos": []}
    plain, damaged = (with_options(videos, PreprocessConfig(".", skip_damaged_frames=on)) for on in (False, True))
    assert what_changed(plain, damaged) == "--skip-damaged-frames was False, now True"
    older = {"digest": "", "options": {k: v for k, v in plain["options"].items() if k != "limit"}, "videos": []}
    assert what_changed(older, plain) == "--limit None is recorded now (the shard was written by another fda version)"
