"""The extension tables (docs/ARCHITECTURE.md): every CLI choice has an entry, every entry is a CLI choice, and the
recipe of each table works: a copy of the table with one toy entry added runs through the code path the CLI uses."""

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
