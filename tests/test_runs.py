"""fda.runs: a run folder's file names, step checkpoints and their pruning, best, resume and eval lookups."""

import json
import os
import time

import pytest

from fda.errors import InputError
from fda.runs import RunDir, newest_run, resume_source


def _touch(path: str, when: float = 0.0) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"x")
    if when:
        os.utime(path, (when, when))
    return path


def test_file_names(tmp_path):
    run = RunDir(str(tmp_path / "r"))
    assert run.config == str(tmp_path / "r" / "train_config.json")
    assert run.metrics == str(tmp_path / "r" / "metrics.jsonl")
    assert run.tensorboard == str(tmp_path / "r" / "tb")
    assert run.best == str(tmp_path / "r" / "checkpoints" / "best.pt")
    assert run.step_checkpoint(100) == str(tmp_path / "r" / "checkpoints" / "step-0000100.pt")
    assert RunDir.of_checkpoint(run.step_checkpoint(3)).path == run.path


def test_checkpoints_sorted_by_step_and_pruned_to_the_last_ones(tmp_path):
    run = RunDir(str(tmp_path / "r"))
    assert run.checkpoints() == [] and run.latest() is None  # no folder yet
    for step in (10, 2, 100, 9):
        _touch(run.step_checkpoint(step))
    for other in ("best.pt", "step-0000005.pt.tmp123", "step-x.pt", "notes.txt"):
        _touch(os.path.join(run.path, "checkpoints", other))
    assert [s for s, _ in run.checkpoints()] == [2, 9, 10, 100]  # numeric order; best and temporaries left out
    assert run.latest() == run.step_checkpoint(100)
    assert run.prune(2) == [run.step_checkpoint(2), run.step_checkpoint(9)]
    assert [s for s, _ in run.checkpoints()] == [10, 100]
    assert os.path.isfile(run.best) and os.path.isfile(os.path.join(run.path, "checkpoints", "notes.txt"))
    assert run.prune(5) == [] and len(run.checkpoints()) == 2


def test_eval_checkpoint_prefers_best_then_the_newest(tmp_path):
    run = RunDir(str(tmp_path / "r"))
    assert run.eval_checkpoint() is None
    now = time.time()
    _touch(run.step_checkpoint(20), now - 100)
    newest = _touch(run.step_checkpoint(10), now - 10)  # written later than step 20's (a resumed, shorter run)
    assert run.eval_checkpoint() == newest
    top = _touch(os.path.join(run.path, "best.pt"), now - 1000)
    assert run.eval_checkpoint() == top
    _touch(run.best, now - 2000)
    assert run.eval_checkpoint() == run.best


def test_resume_source(tmp_path):
    run = RunDir(str(tmp_path / "r"))
    assert resume_source(None, run) is None
    _touch(run.step_checkpoint(1))
    _touch(run.step_checkpoint(4))
    assert resume_source(None, run) == run.step_checkpoint(4)
    other = RunDir(str(tmp_path / "other"))
    assert resume_source(run.path, other) == run.step_checkpoint(4)
    assert resume_source(run.step_checkpoint(1), other) == run.step_checkpoint(1)
    os.makedirs(other.path)
    with pytest.raises(InputError, match=r"^--resume .*other: no checkpoints/step-\*\.pt in it"):
        resume_source(other.path, run)
    with pytest.raises(InputError, match="no such file or folder"):
        resume_source(str(tmp_path / "missing"), run)


def test_newest_run_is_the_last_started_one_with_a_checkpoint(tmp_path):
    root = tmp_path / "runs"
    with pytest.raises(InputError, match="no runs folder"):
        newest_run(str(root))
    os.makedirs(root / "empty")
    with pytest.raises(InputError, match="no run with a checkpoint"):
        newest_run(str(root))
    now = time.time()
    old, new = RunDir(str(root / "old")), RunDir(str(root / "new"))
    _touch(old.step_checkpoint(1))
    _touch(new.step_checkpoint(1))
    _touch(old.config, now - 10)  # started last ...
    _touch(new.config, now - 100)
    _touch(new.step_checkpoint(2), now)  # ... even though the other wrote something later
    assert newest_run(str(root)) == old


def test_read_config_and_new_names(tmp_path, monkeypatch):
    import fda.runs

    run = RunDir(str(tmp_path / "r"))
    assert run.read_config() == {}
    _touch(run.config)
    assert run.read_config() == {}  # unreadable: nothing recorded
    with open(run.config, "w", encoding="utf-8") as f:
        json.dump({"shards_dir": "s"}, f)
    assert run.read_config() == {"shards_dir": "s"}
    monkeypatch.setattr(fda.runs.time, "strftime", lambda fmt: "20260101-120000")
    first = RunDir.new("ViT-B/32", root=str(tmp_path / "runs"))
    assert first.path == str(tmp_path / "runs" / "20260101-120000-ViT-B_32") and not os.path.exists(first.path)
    os.makedirs(first.path)
    assert RunDir.new("ViT-B/32", root=str(tmp_path / "runs")).path == first.path + "-2"
