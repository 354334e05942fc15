"""The model front door: fda.model.create builds what a ModelSource names (weights, checkpoint or run)."""

import os

import pytest
import torch

from fda.config import EvalConfig, ModelSource
from fda.errors import ConfigError, InputError
from fda.model import create, effective_pretrained, get_model_config, resolve
from fda.model.checkpoint import save_checkpoint


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_weights_seed_and_alpha_switch():
    a, ckpt = create(ModelSource(model="fda-tiny"), seed=3)
    b, _ = create(ModelSource(model="fda-tiny"), seed=3)
    c, _ = create(ModelSource(model="fda-tiny"), seed=4)
    assert ckpt == {} and _same(a, b) and not _same(a, c)
    assert create(ModelSource(model="fda-tiny"), use_alpha=False)[0].use_alpha is False


def test_checkpoint_and_run_give_the_saved_model(tmp_path):
    model, _ = create(ModelSource(model="fda-tiny"), seed=1)
    run = tmp_path / "run"
    path = str(run / "checkpoints" / "step-0000002.pt")
    save_checkpoint(path, model, step=2)
    by_file, ckpt = create(ModelSource(checkpoint=path))
    by_run, _ = create(ModelSource(run=str(run)))
    by_newest, _ = create(ModelSource(runs_dir=str(tmp_path)))
    assert ckpt["step"] == 2 and _same(model, by_file) and _same(model, by_run) and _same(model, by_newest)
    assert resolve(ModelSource(run=str(run))) == {"kind": "checkpoint", "checkpoint": path, "run_dir": str(run)}
    with pytest.raises(InputError, match="--checkpoint file not found"):
        create(ModelSource(checkpoint=str(tmp_path / "missing.pt")))
    with pytest.raises(InputError, match="--run folder not found"):
        create(ModelSource(run=str(tmp_path / "nope")))


def test_one_kind_of_source():
    with pytest.raises(ConfigError, match="pass only one kind"):
        EvalConfig(source=ModelSource(run="r", model="fda-tiny"))
    with pytest.raises(ConfigError, match="--alpha-checkpoint goes with"):
        ModelSource(checkpoint="c.pt", alpha_checkpoint="a.pth")


def test_effective_pretrained_lives_with_the_model():
    assert effective_pretrained("openai", get_model_config("fda-tiny")) is None
    assert effective_pretrained("NONE", get_model_config("ViT-B-32")) is None
    assert effective_pretrained("openai", get_model_config("ViT-B-32")) == "openai"
    assert os.path.basename(create.__code__.co_filename) == "source.py"
