"""The options framework (fda.options): spellings come from declarations, name lists from field roles."""

import pytest
from click.testing import CliRunner

from fda.cli import cli
from fda.config import (DATA_FIELDS, OPTIONAL_DATA_FIELDS, RULE_DATA_FIELDS, SAMPLE_FIELDS, EmbedConfig, EvalConfig,
                        TrainConfig)
from fda.errors import ConfigError
from fda.lab.config import RUN_FIELDS
from fda.options import spelling
from fda.train.run import RESUME_FIXED, RESUME_IGNORED


@pytest.mark.parametrize("command,args", [("eval", []), ("embed", ["--out", "emb"])])
def test_decode_threads_message_names_the_real_flag(command, args, tmp_path):
    """Old main said ``--workers must be >= 0``: --workers is a hidden deprecated alias of --decode-threads."""
    result = CliRunner().invoke(cli, [command, *args, "--decode-threads", "-1"])
    assert result.exit_code == 2, result.output
    assert "--decode-threads must be >= 0 decoding threads (0: decode in the main thread), got -1" in result.stderr
    assert "--workers" not in result.stderr  # eval and embed share one check, so one message


@pytest.mark.parametrize("cls,kwargs,option", [(EvalConfig, {}, "--decode-threads"),
                                               (EmbedConfig, {"out": "emb"}, "--decode-threads"),
                                               (TrainConfig, {"shards_dir": "s"}, "--loader-workers")])
def test_check_messages_take_the_declared_spelling(cls, kwargs, option):
    with pytest.raises(ConfigError, match=f"^{option} must be"):
        cls(**kwargs, workers=-1)
    assert spelling(cls, "workers") == option


def test_spelling_of_arguments_and_plain_fields():
    assert spelling(TrainConfig, "shards_dir") == "SHARDS_DIR"
    assert spelling(TrainConfig, "max_steps") == "--max-steps"
    assert spelling(TrainConfig("s"), "lr") == "--lr"


def test_name_lists_come_from_field_roles():
    """The lists the resume and stale-shard checks read are the ones written by hand before the roles."""
    assert set(DATA_FIELDS) == {"layout", "msrvtt_train", "captions", "split", "frames_train", "frames_test", "size",
                                "tau", "kernel", "min_area", "empty_mask", "diff_mode", "camera_motion",
                                "normalize_brightness", "jpeg_quality", "samples_per_shard", "limit", "decoder",
                                "min_decodable"}
    assert set(OPTIONAL_DATA_FIELDS) == {"full_duration", "skip_damaged_frames"}
    assert set(RULE_DATA_FIELDS) == {"mask_rule", "flow_threshold"}
    assert set(SAMPLE_FIELDS) == ((set(DATA_FIELDS) - {"split", "samples_per_shard"}) | set(OPTIONAL_DATA_FIELDS)
                                  | set(RULE_DATA_FIELDS))
    assert set(RESUME_FIXED) == {"model", "pretrained", "alpha_checkpoint", "no_alpha", "freeze_text", "shards_dir",
                                 "split", "batch_size", "accum_steps", "captions", "seed", "shuffle_buffer", "augment",
                                 "val_from_train"}
    assert set(RESUME_IGNORED) == {"out", "resume"}
    assert set(RUN_FIELDS) == {"shards_dir", "out", "split", "val_split", "val_from_train", "no_alpha",
                               "alpha_checkpoint", "captions", "shuffle_buffer", "max_steps", "seed", "save_every",
                               "keep_last", "log_every", "val_every", "tensorboard", "resume"}
