"""The extension tables (docs/ARCHITECTURE.md): every CLI choice has an entry, every entry is a CLI choice, and the
recipe of each table works: a copy of the table with one toy entry added runs through the code path the CLI uses."""

import dataclasses
import json
import os
import shutil
from types import MappingProxyType

import pytest

from fda.config import LAYOUTS, PreprocessConfig
from fda.pipeline.datasets import LAYOUT_TABLE, Layout, Loaded, VideoItem, detect_layout
from fda.pipeline.preprocess import run_preprocess


def test_every_layout_choice_has_an_entry_and_back():
    assert tuple(LAYOUT_TABLE) == LAYOUTS
    assert all(name == entry.name for name, entry in LAYOUT_TABLE.items())
    with pytest.raises(TypeError):
        LAYOUT_TABLE["toy"] = LAYOUT_TABLE["folder"]  # the shipped table is frozen


def test_layout_error_names_every_layout(tmp_path):
    with pytest.raises(Exception) as err:
        detect_layout(str(tmp_path))
    assert all(f"({name})" in str(err.value) for name in LAYOUTS)


# --- recipe: add a layout -------------------------------------------------------------------------------------------
def _toy_markers(root):
    return ["toy.json"] if os.path.isfile(os.path.join(root, "toy.json")) else []


def _toy_load(root, request, files):
    path = os.path.join(root, "toy.json")
    files.append(path)
    rows = json.load(open(path))
    return Loaded({"test": [VideoItem(v, "test", os.path.join(root, v + ".mp4"), (c,), "toy.json") for v, c in rows]})


def test_recipe_add_a_layout(tmp_path, tiny_video):
    """A toy layout: one function for its files, one for its loader, one entry; detected and preprocessed."""
    table = MappingProxyType({**LAYOUT_TABLE, "toy": Layout("toy", _toy_markers, "toy.json", _toy_load, ("test",),
                                                            {"test": 2})})
    root = tmp_path / "data"
    root.mkdir()
    for name in ("a", "b"):
        shutil.copy(tiny_video, root / f"{name}.mp4")
    (root / "toy.json").write_text(json.dumps([["a", "a test pattern"], ["b", "another one"]]))
    assert detect_layout(str(root), table) == "toy"
    result = run_preprocess(PreprocessConfig(str(root), out=str(tmp_path / "shards"), size=32, frames_test=2,
                                             workers=1), layouts=table)
    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert manifest["layout"] == "toy" and result.processed_now == 2


def _toy_all_splits(root, request, files):
    """A loader that, like a first draft, ignores the splits asked for."""
    item = VideoItem("a", "test", os.path.join(root, "a.mp4"), ("a test pattern",), "a.mp4")
    return Loaded({"train": [dataclasses.replace(item, split="train")], "test": [item]})


def test_a_layout_gets_only_the_splits_asked_for_and_those_it_has(tmp_path):
    """The layout's ``splits`` bound ``--split`` whatever its loader does (old main: --split test of this layout wrote
    its train split too, and --split val wrote train and test)."""
    from fda.errors import ConfigError
    from fda.pipeline.datasets import load_dataset

    table = MappingProxyType({**LAYOUT_TABLE, "toy": Layout("toy", _toy_markers, "toy.json", _toy_all_splits,
                                                            ("train", "test"))})
    assert list(load_dataset(str(tmp_path), "toy", splits=("test",), layouts=table).items) == ["test"]
    assert list(load_dataset(str(tmp_path), "toy", layouts=table).items) == ["train", "test"]
    with pytest.raises(ConfigError, match=r"the toy dataset has no 'val' split \(it has train, test\): pass --split"):
        load_dataset(str(tmp_path), "toy", splits=("val",), layouts=table)


# --- bench-motion arms ----------------------------------------------------------------------------------------------
def test_every_arm_choice_has_an_entry_and_back():
    from fda.lab.config import BENCH_ARMS
    from fda.lab.motion_bench import ARMS

    assert tuple(ARMS) == BENCH_ARMS
    assert all(name == arm.name and arm.label and arm.colour for name, arm in ARMS.items())
    assert [name for name, arm in ARMS.items() if arm.no_alpha] == ["no-alpha"]


def test_the_arms_help_and_choices_come_from_one_table():
    """--arms lists every choice with its words from BENCH_ARM_HELP; an added entry shows up in both."""
    import dataclasses

    from fda.lab import config as lab_config
    from fda.options import choices_help

    table = lab_config.BENCH_ARM_HELP
    assert lab_config.BENCH_ARMS == tuple(table)
    arms = next(f for f in dataclasses.fields(lab_config.BenchMotionConfig) if f.name == "arms")
    assert arms.metadata["cli"].help == choices_help("Comma list of arms", table)
    toy = choices_help("Comma list of arms", {**table, "zeros": "all-zero masks"})
    assert toy.startswith("Comma list of arms: masks, no-alpha (the reference, required), full (all-ones masks), ")
    rules = ", ".join(lab_config.MASK_RULES[1:])  # one arm per mask rule but diff, their words written once
    assert toy.endswith(f", {rules} (masks made with that --mask-rule and --camera-motion compensate), "
                        "zeros (all-zero masks).")
    with pytest.raises(TypeError):
        table["zeros"] = "all-zero masks"  # the shipped table is frozen


def _zero_masks(inputs):
    """The toy arm's shards: every mask all zeros (a copy through fda.shards.rewrite)."""
    from fda.shards import rewrite
    from fda.shards.schema import META, mask_member
    from fda.shards.writer import encode_mask
    import numpy as np

    def zeros(split, samples):
        out = []
        for raw in samples:
            meta = json.loads(raw[META])
            png = encode_mask(np.zeros((meta["size"], meta["size"]), np.uint8))
            out.append({mask_member(i): png for i in range(len(meta["indices"]))})
        return out

    return rewrite(inputs.shards, os.path.join(inputs.base, "shards", "zeros"), zeros, derived={"masks": "zeros"})


def test_recipe_add_an_arm(tmp_path):
    """A toy arm (all-zero masks): one function, one entry; bench-motion trains, tests and tables it."""
    import dataclasses

    from fda.lab.config import SCENE_BUDGET, BenchMotionConfig, Scenes
    from fda.lab.motion_bench import ARMS, Arm, run_bench_motion

    table = MappingProxyType({**ARMS, "zeros": Arm("zeros", "all-zero masks", "tab:brown", _zero_masks)})
    budget = SCENE_BUDGET
    budget = dataclasses.replace(budget, steps=1, seeds="0", eval_batch_size=4, train=dataclasses.replace(
        budget.train, batch_size=2, workers=0, model="fda-tiny", device="cpu"))
    cfg = BenchMotionConfig(out=str(tmp_path / "bench"), sets="motion", train_videos=4, test_videos=4,
                            scenes=Scenes(frames=2, preprocess=PreprocessConfig("", workers=1)), budget=budget)
    result = run_bench_motion(cfg, arms=table, names=("masks", "no-alpha", "zeros"))
    assert [r["arm"] for r in result.rows] == ["masks", "no-alpha", "zeros"]
    assert "all-zero masks" in result.table() and os.path.getsize(result.figure) > 5000


# --- mask rules -----------------------------------------------------------------------------------------------------
def test_every_mask_rule_choice_has_an_entry_and_back():
    from fda.config import MASK_RULES as CHOICES
    from fda.pipeline.mask_rules import MASK_RULES

    assert tuple(MASK_RULES) == CHOICES and all(name == rule.name for name, rule in MASK_RULES.items())
    with pytest.raises(TypeError):
        MASK_RULES["toy"] = MASK_RULES["diff"]  # the shipped table is frozen


def _left_half(frames, partners, vectors, mask):
    """The toy rule: the left half of every frame moves."""
    import numpy as np

    masks = np.zeros(frames.shape[:3], np.uint8)
    masks[:, :, :frames.shape[2] // 2] = 1
    return masks, np.zeros(len(frames), bool), {}


def test_recipe_add_a_mask_rule(tmp_path, tiny_video):
    """A toy rule: one function, one entry; ``run_preprocess(cfg, rules=table)`` (the CLI's path, on two worker
    processes, which get the rule pickled by reference) writes its masks, and its text in every sample json and the
    manifest. Old main: the config refused the rule, and the workers and the manifest read the shipped table only."""
    import glob

    from fda.config import MaskConfig
    from fda.errors import ConfigError
    from fda.pipeline.mask_rules import MASK_RULES, MaskRule
    from fda.shards.reader import decode_sample, iter_samples

    rules = MappingProxyType({**MASK_RULES, "toy": MaskRule("toy", _left_half, "the left half", label="toy")})
    root = tmp_path / "data"
    root.mkdir()
    for name in ("a", "b"):
        shutil.copy(tiny_video, root / f"{name}.mp4")
    (root / "captions.csv").write_text("video,caption,split\na.mp4,a test pattern,test\nb.mp4,another one,test\n")
    out = tmp_path / "shards"
    cfg = PreprocessConfig(str(root), out=str(out), size=32, frames_test=3, workers=2, mask=MaskConfig(mask_rule="toy"))
    with pytest.raises(ConfigError) as err:  # the shipped table has no such rule: one line, before any work
        run_preprocess(cfg)
    assert str(err.value) == "--mask-rule must be one of diff, flow, mv, got 'toy'" and not out.exists()
    result = run_preprocess(cfg, rules=rules)
    assert result.processed_now == 2 and not result.manifest["failures"]
    samples = [decode_sample(s) for s in iter_samples(sorted(glob.glob(str(out / "test-*.tar"))))]
    assert [s["meta"]["video_id"] for s in samples] == ["a", "b"]
    for sample in samples:
        masks = sample["masks"]
        assert masks.shape == (3, 32, 32)
        assert masks[:, :, :16].all() and not masks[:, :, 16:].any()
        assert sample["meta"]["mask"]["rule"] == "the left half" and sample["meta"]["mask"]["mask_rule"] == "toy"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["mask"]["rule"] == "the left half" and manifest["mask"]["mask_rule"] == "toy"
    assert manifest["config"]["mask_rule"] == "toy"
    assert json.loads((out / "config.json").read_text())["data"]["mask_rule"] == "toy"
    assert tuple(MASK_RULES) == ("diff", "flow", "mv")  # the shipped table is left as it was
    with pytest.raises(TypeError):
        MASK_RULES["toy"] = rules["toy"]


def test_the_mask_rule_help_and_choices_come_from_one_declaration():
    """--mask-rule lists every rule of the table with its words from MASK_RULE_HELP (as --arms does)."""
    from fda import config
    from fda.options import choices_help
    from fda.pipeline.mask_rules import MASK_RULES

    assert tuple(config.MASK_RULE_HELP) == tuple(MASK_RULES) == config.MASK_RULES
    rule = next(f for f in dataclasses.fields(config.MaskConfig) if f.name == "mask_rule")
    assert rule.metadata["cli"].choices == config.MASK_RULES
    assert rule.metadata["cli"].help == choices_help("The dynamic-region estimate", config.MASK_RULE_HELP) + \
        " See docs/MASKS.md."
    assert rule.metadata["cli"].help.startswith("The dynamic-region estimate: diff (the paper's frame difference), "
                                                "flow (dense optical flow, DIS), mv (the codec's motion vectors")
    with pytest.raises(TypeError):
        config.MASK_RULE_HELP["toy"] = "the left half"  # the shipped table is frozen
