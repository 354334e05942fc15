"""Captions files users write by hand: each mistake is a one-line error naming the file and line, or a line the
manifest records; no run exits 0 with a caption other than the one written (issue 20)."""

import json
import os
import shutil
import tarfile

import pytest
from click.testing import CliRunner

from fda.cli import cli

HEAD = "video,caption,split\n"
# (captions file name, its text, what must happen): ("error", text the one Error line holds) or ("recorded", key)
MISTAKES = {
    "comma in an unquoted caption": (
        "captions.csv", "video,caption\na.mp4,a man, riding a bike, on a street\nb.mp4,a phone\n",
        ("error", "captions.csv line 2: 4 comma-separated fields, but the header has 2 (video,caption): a comma "
                  "inside a caption needs the caption in double quotes")),
    "a fourth field": (
        "captions.csv", HEAD + "a.mp4,a man rides,test,extra\nb.mp4,a phone,test\n",
        ("error", "captions.csv line 2: 4 comma-separated fields, but the header has 3")),
    "an unclosed quote swallowing the next row": (
        "captions.csv", HEAD + 'a.mp4,"a man rides a bike,test\nb.mp4,a man on a phone,test\n',
        ("error", "captions.csv line 2: an unclosed quote runs to the end of the file")),
    "a quote closed on a later row": (
        "captions.csv", HEAD + 'a.mp4,"a man rides a bike,test\nb.mp4,a phone",test\n',
        ("error", "captions.csv line 2: a quoted field runs over lines 2-3")),
    "text after a closing quote": (
        "captions.csv", HEAD + 'a.mp4,"a man" rides a bike,test\nb.mp4,a phone,test\n',
        ("error", "captions.csv line 2: ',' expected after '\"'")),
    "an unknown header": (
        "captions.csv", "video,text\na.mp4,a man\n", ("error", "captions.csv line 1: the header must name")),
    "a misspelled header": (
        "captions.csv", "video,captoin\na.mp4,a man\n", ("error", "got unknown column 'captoin'")),
    "no header line": (
        "captions.csv", "a.mp4,a man\nb.mp4,a phone\n", ("error", "got unknown column 'a.mp4'")),
    "a column twice": (
        "captions.csv", "video,caption,caption\na.mp4,a man,a bike\n", ("error", "got column 'caption' twice")),
    "a row with too few fields": (
        "captions.csv", "video,caption\na.mp4\nb.mp4,a phone\n",
        ("error", "captions.csv line 2: 1 comma-separated fields, but the header has 2 (video,caption): fix the row")),
    "semicolons for commas": (
        "captions.csv", "video;caption\na.mp4;a man\n", ("error", "got unknown column 'video;caption'")),
    "a tab inside a TSV caption": (
        "captions.tsv", "video\tcaption\na.mp4\ta man\triding\nb.mp4\ta phone\n",
        ("error", "captions.tsv line 2: 3 tab-separated fields, but the header has 2")),
    "a TSV written with commas": (
        "captions.tsv", "video,caption\na.mp4,a man\n", ("error", "got unknown column 'video,caption'")),
    "a misspelled split": (
        "captions.csv", HEAD + "a.mp4,a man,tset\n", ("error", "captions.csv line 2: split must be one of")),
    "an empty video field": (
        "captions.csv", "video,caption\n,a man\n", ("error", "captions.csv line 2: empty 'video'")),
    "invalid JSON": (
        "captions.jsonl", '{"video": "a.mp4", "caption": "a man"}\n{"video": "b.mp4", "caption": "a phone",}\n',
        ("error", "captions.jsonl line 2: not valid JSON")),
    "an unknown JSONL key": (
        "captions.jsonl", '{"video": "a.mp4", "caption": "a man", "splt": "train"}\n',
        ("error", "captions.jsonl line 1: unknown key 'splt'")),
    "a number for a caption": (
        "captions.jsonl", '{"video": "a.mp4", "caption": "a man"}\n{"video": "b.mp4", "caption": 7}\n',
        ("error", "captions.jsonl line 2: 'caption' and 'captions' must be a string")),
    "a video nobody listed": (
        "captions.csv", 'video,caption\na.mp4,"a man, on a bike"\nb.mp4,a phone\n', ("recorded", "unlisted")),
    "a listed video that is not there": (
        "captions.csv", "video,caption\na.mp4,a man\nb.mp4,a phone\nc.mp4,a car\nd.mp4,a dog\n",
        ("recorded", "failures")),
}


def _shard_captions(out):
    """video key -> captions stored in the shards of ``out``."""
    found = {}
    for name in sorted(os.listdir(out)):
        if name.endswith(".tar"):
            with tarfile.open(os.path.join(out, name)) as tar:
                for member in tar.getmembers():
                    if member.name.endswith(".captions.json"):
                        found[member.name.split(".", 1)[0]] = json.loads(tar.extractfile(member).read())
    return found


def test_twenty_mistakes():
    assert len(MISTAKES) == 20


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_captions_mistake_is_an_error_or_a_recorded_line(mistake, tmp_path, tiny_video):
    name, text, (kind, expected) = MISTAKES[mistake]
    root = tmp_path / "data"
    root.mkdir()
    for video in ("a", "b", "c"):
        shutil.copy(tiny_video, root / f"{video}.mp4")
    (root / name).write_text(text, encoding="utf-8")
    out = tmp_path / "shards"
    res = CliRunner().invoke(cli, ["preprocess", str(root), "--out", str(out), "--size", "32", "--frames-test", "2",
                                   "--workers", "1"])
    assert "Traceback" not in res.stderr, res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("Error:")]
    if kind == "error":
        assert res.exit_code == 3, res.output
        assert len(errors) == 1 and expected in errors[0], res.stderr
        assert str(root / name) in errors[0]
        assert not out.exists() or not any(n.endswith(".tar") for n in os.listdir(out))
        return
    manifest = json.loads((out / "manifest.json").read_text())
    if expected == "unlisted":
        assert res.exit_code == 0, res.output
        assert manifest["unlisted"] == ["c.mp4"]
        assert "1 videos under the root not in captions.csv (manifest 'unlisted')" in res.stdout
        assert _shard_captions(out) == {"a": ["a man, on a bike"], "b": ["a phone"]}
    else:  # 1 of 4 failed: over --max-failure-rate, so not exit 0, and the manifest says which and why
        assert res.exit_code == 3 and len(errors) == 1
        assert [(f["video_id"], f["error"]) for f in manifest["failures"]] == [
            ("d", "listed video not found under the dataset root")]
        assert _shard_captions(out) == {"a": ["a man"], "b": ["a phone"], "c": ["a car"]}


def test_unlisted_and_uncaptioned_on_old_and_new_layouts(tmp_path, tiny_video):
    """A folder without a captions file is an uncaptioned library; a captioned set keeps refusing caption-less
    videos (with the reason); unlisted files never appear for the standard layouts."""
    from fda.pipeline.datasets import load_dataset

    for video in ("a", "b"):
        shutil.copy(tiny_video, tmp_path / f"{video}.mp4")
    ds = load_dataset(str(tmp_path))
    assert ds.layout == "folder" and not ds.captioned and ds.captions_file is None
    assert [(it.video_id, it.captions, it.split) for it in ds.items["test"]] == [("a", (), "test"), ("b", (), "test")]
    (tmp_path / "captions.csv").write_text("video,caption\na.mp4,\nb.mp4,a phone\n")
    out = tmp_path / "shards"
    res = CliRunner().invoke(cli, ["preprocess", str(tmp_path), "--out", str(out), "--size", "32", "--frames-test",
                                   "2", "--workers", "1", "--max-failure-rate", "0.5"])
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert [f["video_id"] for f in manifest["failures"]] == ["a"]
    assert manifest["failures"][0]["error"].startswith("no caption: add one in captions.csv")
    assert _shard_captions(out) == {"b": ["a phone"]} and manifest["unlisted"] == []


def test_an_uncaptioned_library_is_preprocessed_embedded_and_searched(tmp_path, ffmpeg_exe):
    """A folder of videos with no captions file: preprocess (test split), embed, search; train and eval refuse it in
    one line."""
    import subprocess

    root = tmp_path / "footage"
    (root / "day two").mkdir(parents=True)
    for name, source in (("beach.mp4", "testsrc"), ("day two/city.mkv", "smptebars"), ("garden.webm", "mandelbrot")):
        codec = ["-c:v", "libvpx", "-b:v", "200k"] if name.endswith(".webm") else ["-pix_fmt", "yuv420p"]
        subprocess.run([ffmpeg_exe, "-y", "-loglevel", "error", "-f", "lavfi", "-i", f"{source}=size=64x48:rate=8",
                        "-t", "1", *codec, str(root / name)], check=True)
    shards, emb = str(tmp_path / "shards"), str(tmp_path / "emb")
    runner = CliRunner()
    res = runner.invoke(cli, ["preprocess", str(root), "--out", shards, "--size", "32", "--frames-test", "2",
                              "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "wrote 3 test videos in 1 shards" in res.stdout and "without captions (for fda embed/search)" in res.stdout
    assert "indexing its 3 videos without captions (split test)" in res.stderr
    manifest = json.loads(open(os.path.join(shards, "manifest.json")).read())
    assert manifest["uncaptioned"] and manifest["failures"] == [] and list(manifest["splits"]) == ["test"]

    res = runner.invoke(cli, ["train", shards, "--model", "fda-tiny", "--pretrained", "none", "--out",
                              str(tmp_path / "run")])
    assert res.exit_code == 3 and res.stderr.count("\n") == 1, res.stderr
    assert "has no captions (preprocessed without a captions file): fda train needs captions" in res.stderr
    assert not (tmp_path / "run").exists()
    res = runner.invoke(cli, ["eval", "--shards", shards, "--model", "fda-tiny", "--pretrained", "none"])
    assert res.exit_code == 3 and "fda eval needs captions" in res.stderr

    res = runner.invoke(cli, ["embed", "--shards", shards, "--model", "fda-tiny", "--pretrained", "none", "--out", emb,
                              "--decode-threads", "0", "--device", "cpu"])
    assert res.exit_code == 0, res.output + res.stderr
    doc = json.loads(open(os.path.join(emb, "embeddings.json")).read())
    assert doc["videos"]["count"] == 3 and doc["captions"]["count"] == 0
    res = runner.invoke(cli, ["search", emb, "a beach at sunset", "-k", "3", "--json"])
    assert res.exit_code == 0, res.stderr
    assert sorted(h["id"] for h in json.loads(res.stdout)["hits"]) == ["beach", "day two/city", "garden"]
    res = runner.invoke(cli, ["search", emb, "--video", "beach", "-k", "2"])
    assert res.exit_code == 0 and "beach" not in res.stdout and len(res.stdout.strip().splitlines()) == 2


def test_the_documented_examples_of_each_format_read_as_written(tmp_path):
    import re

    from fda.pipeline.datasets import load_dataset

    readme = open(os.path.join(os.path.dirname(__file__), "..", "docs", "DATASETS.md"), encoding="utf-8").read()
    start = readme.index("The same two videos in each format:")
    blocks = re.findall(r"```\n(.*?)```", readme[start:start + 2000], re.S)[:3]
    for name, block in zip(("captions.csv", "captions.tsv", "captions.jsonl"), blocks):
        root = tmp_path / name.split(".")[1]
        root.mkdir()
        (root / name).write_text(block, encoding="utf-8")
        for video in ("cat.mp4", "dog.mp4"):
            (root / video).write_bytes(b"\0")
        ds = load_dataset(str(root))
        assert [(it.video_id, it.captions, it.split) for items in ds.items.values() for it in items] == [
            ("cat", ("a cat jumps onto the sofa, then sleeps",), "train"), ("dog", ("a dog chases a ball",), "test")]
